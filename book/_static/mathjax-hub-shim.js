// The widget manager typesets widget labels through MathJax 2's API (MathJax.Hub.Queue),
// but the book runs MathJax 3: route those calls to MathJax 3's typesetPromise.
(function () {
  if (window.MathJax && !window.MathJax.Hub) {
    window.MathJax.Hub = {
      Queue: function (job) {
        var element = Array.isArray(job) ? job[2] : undefined;
        if (window.MathJax.typesetPromise) window.MathJax.typesetPromise(element ? [element] : undefined);
      },
    };
  }
})();
