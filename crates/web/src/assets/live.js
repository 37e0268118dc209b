// Progressive enhancement: fill the grid as results arrive (Server-Sent Events),
// then reload to show the verdict. Without JavaScript the page refreshes itself.
// The stream starts after the results this page already shows (?from=), and a
// dropped connection resumes where it left off (the browser sends Last-Event-ID).
// When the server refuses a stream (too many open: a 429 with Retry-After: 10),
// the page falls back to reloading itself, as it does without JavaScript, at
// the pace the server asked for.
(function () {
  var grid = document.getElementById('grid');
  if (!grid || grid.dataset.running !== 'true' || !window.EventSource) return;
  var letters = { open: 'O', closed: 'C', filtered: 'F', stealth: 'S' };
  var from = parseInt(grid.dataset.from, 10) || 0;
  var es = new EventSource('/scan/' + grid.dataset.scan + '/events?from=' + from);
  es.addEventListener('port', function (e) {
    var r = JSON.parse(e.data);
    var cell = document.getElementById('p' + r.port);
    if (!cell) return;
    cell.className = 'cell s-' + r.state;
    cell.textContent = letters[r.state] || '?';
    cell.title = 'port ' + r.port + ': ' + r.state + ' (' + r.reason + ')';
    cell.setAttribute('aria-label', 'port ' + r.port + ' ' + r.state);
  });
  es.addEventListener('done', function () { es.close(); location.reload(); });
  es.onerror = function () {
    // CONNECTING: the browser retries by itself, with Last-Event-ID.
    // CLOSED: refused (e.g. 429) or not a stream: reload like the no-JS page.
    if (es.readyState === EventSource.CLOSED) {
      setTimeout(function () { location.reload(); }, 10000);
    }
  };
})();
