"""Networks of the course: the FC-vs-FCN classifier and the U-Net."""


__all__ = [
]
