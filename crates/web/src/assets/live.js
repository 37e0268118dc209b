// Progressive enhancement: fill the grid as results arrive (Server-Sent Events),
// then reload to show the verdict. Without JavaScript the page refreshes itself.
(function () {
  var grid = document.getElementById('grid');
  if (!grid || grid.dataset.running !== 'true' || !window.EventSource) return;
  var letters = { open: 'O', closed: 'C', filtered: 'F', stealth: 'S' };
  var es = new EventSource('/scan/' + grid.dataset.scan + '/events');
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
  es.onerror = function () { es.close(); setTimeout(function () { location.reload(); }, 2000); };
})();
