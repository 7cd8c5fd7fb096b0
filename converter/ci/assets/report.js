// convertkit HTML report: the one control on the page (inlined; no network).
(function () {
  const box = document.getElementById('only-bad');
  if (!box) return;
  box.addEventListener('change', () => document.body.classList.toggle('only-bad', box.checked));
})();
