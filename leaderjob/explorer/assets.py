"""The page's stylesheet and script, served from the package itself (no build step, no CDN: the
page works in a cluster without internet).

Text colours keep a contrast of at least 4.5:1 on their background (WCAG AA); the outcome colours
of the bars are told apart by the legend's words too, not by colour alone.
"""

CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, sans-serif; color: #1a1a1a; background: #fff; margin: 0; }
header { background: #1f2d3d; color: #fff; padding: 8px 16px; display: flex; gap: 16px;
  align-items: baseline; }
header a { color: #fff; }
header h1 { font-size: 16px; margin: 0; }
main { padding: 8px 16px 32px; }
a { color: #0b57d0; }
a:focus-visible, button:focus-visible, select:focus-visible, input:focus-visible {
  outline: 3px solid #b35900; outline-offset: 1px; }
table { border-collapse: collapse; margin: 8px 0 16px; }
th, td { text-align: left; padding: 3px 10px 3px 0; border-bottom: 1px solid #d0d7de;
  vertical-align: top; }
th { font-weight: 600; }
.muted { color: #555; }
.warn { color: #a00000; font-weight: 600; }
.ok { color: #1b5e20; }
form.window { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; margin: 8px 0; }
button { font: inherit; padding: 2px 10px; }
.layout { display: flex; gap: 16px; align-items: flex-start; }
.layout > .main { flex: 1 1 auto; min-width: 0; }
#detail { flex: 0 0 380px; border: 1px solid #d0d7de; padding: 8px 12px; max-height: 80vh;
  overflow: auto; background: #fafbfc; }
#detail pre { white-space: pre-wrap; word-break: break-all; background: #f0f2f4; padding: 6px;
  color: #1a1a1a; }
#detail dl { display: grid; grid-template-columns: max-content auto; gap: 2px 10px; }
#detail dt { font-weight: 600; }
#detail dd { margin: 0; }
svg.timeline { display: block; border: 1px solid #d0d7de; background: #fff; }
svg .lane-a { fill: #f6f8fa; } svg .lane-b { fill: #fff; }
svg text { font: 11px system-ui, sans-serif; fill: #333; }
svg .lane-label { font-weight: 600; }
svg .grid { stroke: #d0d7de; stroke-width: 1; }
svg .bar.o-ok { fill: #2e7d32; } svg .bar.o-failed { fill: #e65100; }
svg .bar.o-timeout { fill: #6a1b9a; } svg .bar.o-stopped { fill: #546e7a; }
svg .bar.o-running { fill: #1565c0; fill-opacity: .6; }
svg .bar.overlapping { stroke: #d50000; stroke-width: 3; }
svg .overlap { fill: #d50000; fill-opacity: .25; }
svg a.run:focus rect, svg a.run.selected rect { stroke: #111; stroke-width: 2; }
svg .marker line { stroke: #111; stroke-dasharray: 4 3; stroke-width: 1.2; }
svg .marker text { font-weight: 600; fill: #111; }
svg .tick line { stroke-width: 3; } svg .tick .range { fill-opacity: .35; }
svg .r-missed line, svg .r-missing line { stroke: #c62828; }
svg .r-missed .range, svg .r-missing .range { fill: #c62828; }
svg .r-skipped line, svg .r-late line { stroke: #ef6c00; }
svg .r-skipped .range, svg .r-late .range { fill: #ef6c00; }
svg .r-suspended line { stroke: #616161; } svg .r-suspended .range { fill: #616161; }
svg .r-failed_to_start line { stroke: #6a1b9a; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; margin: 6px 0 12px; padding: 0;
  list-style: none; }
.legend .sw { display: inline-block; width: 12px; height: 12px; margin-right: 4px;
  vertical-align: -1px; }
.sw-ok { background: #2e7d32; } .sw-failed { background: #e65100; }
.sw-timeout { background: #6a1b9a; } .sw-stopped { background: #546e7a; }
.sw-running { background: #1565c0; } .sw-missed { background: #c62828; }
.sw-skipped { background: #ef6c00; } .sw-suspended { background: #616161; }
.sw-overlap { background: #d50000; }
"""

JS = """
(function () {
  "use strict";
  var panel = document.getElementById("detail");
  if (!panel) { return; }
  function show(link) {
    var href = link.getAttribute("href");
    fetch(href + (href.indexOf("?") < 0 ? "?" : "&") + "fragment=1")
      .then(function (r) { return r.text(); })
      .then(function (html) {
        panel.innerHTML = html;
        panel.hidden = false;
        panel.focus();
        document.querySelectorAll("a.run.selected").forEach(function (e) {
          e.classList.remove("selected");
        });
        link.classList.add("selected");
      });
  }
  document.addEventListener("click", function (ev) {
    var link = ev.target.closest ? ev.target.closest("a.run") : null;
    if (!link || ev.ctrlKey || ev.metaKey || ev.shiftKey) { return; }
    ev.preventDefault();
    show(link);
  });
  document.addEventListener("keydown", function (ev) {
    if (ev.key === "Escape") { panel.hidden = true; }
  });
})();
"""
