// Progressive enhancement of a running test's page. Results arrive over
// Server-Sent Events and settle in place (grid cells or table rows keep their
// position); a progress bar shows the count and an estimate; a polite live
// region tells screen readers how far it got, every few seconds rather than
// per port. When the test is done the finished page is fetched and its
// sections (summary and verdict, findings, ports, report) replace the running
// ones in place: no reload, focus and scroll position kept.
// Without JavaScript the page refreshes itself instead.
// The stream starts after the results this page already shows (?from=), and a
// dropped connection resumes where it left off (the browser sends Last-Event-ID).
// When the server refuses a stream (too many open: a 429 with Retry-After: 10),
// the page falls back to reloading itself, as it does without JavaScript, at
// the pace the server asked for.
(function () {
  var grid = document.getElementById('grid');
  if (!grid || grid.dataset.running !== 'true' || !window.EventSource) return;
  // Same glyphs, classes and words as render/scan.rs.
  var looks = {
    open: ['\u25cf', 'so', 'open'], closed: ['\u2212', 'sc', 'closed'],
    filtered: ['\u25b2', 'sf', 'filtered'], stealth: ['\u25cb', 'ss', 'stealth'],
  };
  var words = {
    'syn-ack': 'accepted (SYN-ACK)', rst: 'refused (RST)', 'no-response': 'no answer',
    connected: 'connection accepted', 'conn-refused': 'connection refused',
    'host-unreach': 'host unreachable', 'net-unreach': 'network unreachable',
    'udp-reply': 'answered (UDP reply)', 'port-unreach': 'refused (ICMP port unreachable)',
  };
  // Silence on UDP is not stealth: a service may simply not answer.
  if (grid.dataset.proto === 'udp') {
    looks.stealth = ['\u25cb', 'ss', 'no reply'];
    words['no-response'] = 'no reply: filtered or a silent service';
  }
  function evidence(r) {
    if (words[r]) return words[r];
    var m = /^icmp(v6)?-(.*)$/.exec(r);
    return m ? 'blocked (ICMP' + (m[1] || '') + ' ' + m[2] + ')' : r;
  }
  var total = parseInt(grid.dataset.total, 10) || 0;
  var done = parseInt(grid.dataset.from, 10) || 0;
  var open = document.querySelectorAll('#grid .so').length;
  // The counts by state in the summary (server order: open, filtered, closed, stealth).
  var order = ['open', 'filtered', 'closed', 'stealth'];
  var tally = {};
  var shown = document.querySelectorAll('#counts strong');
  order.forEach(function (st, i) { tally[st] = shown[i] ? parseInt(shown[i].textContent, 10) || 0 : 0; });
  var startDone = done;
  var started = Date.now();
  var prog = document.getElementById('prog');
  var count = document.getElementById('count');
  var live = document.getElementById('live');
  var said = 0;

  function estimate() {
    var secs = (Date.now() - started) / 1000;
    var rate = (done - startDone) / secs;
    if (secs < 2 || rate <= 0 || done >= total) return '';
    var left = Math.ceil((total - done) / rate);
    return left < 60 ? ' About ' + left + ' s left.' : ' About ' + Math.ceil(left / 60) + ' min left.';
  }
  function progressText() {
    return done + ' of ' + total + ' ports tested' + (open ? ', ' + open + ' open so far.' : '.');
  }
  // The visible count follows every port (cheap); the spoken one every 5 s.
  function show() {
    if (prog) prog.value = done;
    order.forEach(function (st, i) { if (shown[i]) shown[i].textContent = tally[st]; });
    if (count) count.textContent = progressText() + estimate();
    if (live && Date.now() - said > 5000) {
      said = Date.now();
      live.textContent = progressText();
    }
  }
  var pending = false;
  function schedule() {
    if (pending) return;
    pending = true;
    setTimeout(function () { pending = false; show(); }, 250);
  }
  said = Date.now();

  function settle(r) {
    var el = document.getElementById('p' + r.port);
    var look = looks[r.state];
    if (!el || !look) return;
    var ev = evidence(r.reason);
    var rtt = r.rtt_ms == null ? '' : r.rtt_ms.toFixed(1) + ' ms';
    var ttl = r.ttl == null ? '' : String(r.ttl);
    if (el.tagName === 'TR') {
      el.className = look[1];
      var c = el.cells;
      c[2].firstElementChild.textContent = look[0];
      c[2].lastChild.textContent = ' ' + look[2];
      c[3].textContent = ev;
      c[4].textContent = rtt;
      c[5].textContent = ttl;
    } else {
      var label = r.port + ': ' + look[2] + ', ' + ev + (rtt ? ', ' + rtt : '') + (ttl ? ', TTL ' + ttl : '');
      el.className = look[1];
      el.textContent = look[0];
      el.setAttribute('aria-label', label);
    }
  }

  // The finished page's sections replace the running ones, by id. The
  // focused control (found again by its nearest id and position) keeps focus,
  // and the page scrolls so that it, or the ports section, stays where it was.
  var focusable = 'a,button,summary,input';
  function finish() {
    var active = document.activeElement;
    var holder = active && active !== document.body ? active.closest('[id]') : null;
    var index = holder ? Array.prototype.indexOf.call(holder.querySelectorAll(focusable), active) : -1;
    var anchorId = holder ? holder.id : 'results';
    var anchor = document.getElementById(anchorId);
    var before = anchor ? anchor.getBoundingClientRect().top : 0;
    fetch(location.pathname, { credentials: 'same-origin' })
      .then(function (r) {
        if (!r.ok) throw new Error(r.status);
        return r.text();
      })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, 'text/html');
        ['sum', 'findings', 'results', 'share'].forEach(function (id) {
          var now = document.getElementById(id);
          var next = doc.getElementById(id);
          if (now && next) now.replaceWith(document.importNode(next, true));
        });
        var again = document.getElementById(anchorId);
        if (again) {
          window.scrollBy(0, again.getBoundingClientRect().top - before);
          var target = index >= 0 ? again.querySelectorAll(focusable)[index] : null;
          if (target) target.focus({ preventScroll: true });
        }
        var h = document.querySelector('#verdict h2');
        if (live) live.textContent = 'Test finished. ' + (h ? h.textContent : '');
      })
      .catch(function () { location.reload(); });
  }

  var es = new EventSource('/scan/' + grid.dataset.scan + '/events?from=' + done);
  es.addEventListener('port', function (e) {
    var r = JSON.parse(e.data);
    settle(r);
    done += 1;
    if (r.state === 'open') open += 1;
    if (r.state in tally) tally[r.state] += 1;
    schedule();
  });
  es.addEventListener('done', function () { es.close(); show(); finish(); });
  es.onerror = function () {
    // CONNECTING: the browser retries by itself, with Last-Event-ID.
    // CLOSED: refused (e.g. 429) or not a stream: reload like the no-JS page.
    if (es.readyState === EventSource.CLOSED) {
      setTimeout(function () { location.reload(); }, 10000);
    }
  };
})();
