// A documented subset of accessibility rules, run in the page (docs/ui.md): each finding is one
// line; none is a pass. Rules: the document has a language and a title; every control (link,
// button, field) is reachable with the keyboard and has a name (its text, aria-label, or for a
// field its <label>); every graphic has a role and a label; text has a contrast of at least
// 4.5:1 against what is behind it (WCAG 2 AA, normal text).
(() => {
  const found = [];
  const short = (el) => el.outerHTML.slice(0, 90);
  if (!document.documentElement.lang) found.push("html: no lang");
  if (!document.title.trim()) found.push("no <title>");

  for (const el of document.querySelectorAll("a[href], button, input, select, textarea")) {
    if (el.closest("[hidden]")) continue;
    el.focus();
    if (document.activeElement !== el || el.tabIndex < 0) found.push("not focusable: " + short(el));
    let name = (el.getAttribute("aria-label") || el.textContent || "").trim();
    if (["INPUT", "SELECT", "TEXTAREA"].includes(el.tagName)) {
      const label = el.id && document.querySelector(`label[for="${el.id}"]`);
      name = ((label && label.textContent) || el.getAttribute("aria-label") || "").trim();
    }
    if (!name) found.push("no name: " + short(el));
  }
  if (document.activeElement) document.activeElement.blur();

  for (const svg of document.querySelectorAll("svg")) {
    if (!svg.getAttribute("role") || !svg.getAttribute("aria-label")) {
      found.push("graphic without role and label: " + short(svg));
    }
  }

  const rgb = (text) => (text.match(/[\d.]+/g) || []).map(Number);
  const lum = (c) => {
    const f = (v) => ((v /= 255) <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4));
    return 0.2126 * f(c[0]) + 0.7152 * f(c[1]) + 0.0722 * f(c[2]);
  };
  const ratio = (a, b) => {
    const [hi, lo] = [lum(a), lum(b)].sort((x, y) => y - x);
    return (hi + 0.05) / (lo + 0.05);
  };
  const behind = (el) => {
    for (let e = el; e && e.nodeType === 1; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3);
    }
    return [255, 255, 255];
  };
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const seen = new Set();
  while (walker.nextNode()) {
    const el = walker.currentNode.parentElement;
    if (!walker.currentNode.textContent.trim() || seen.has(el)) continue;
    seen.add(el);
    if (el.closest("[hidden], title, script, style")) continue;
    const style = getComputedStyle(el);
    if (style.visibility === "hidden" || style.display === "none") continue;
    let fg, bg;
    if (el instanceof SVGElement) {
      fg = rgb(style.fill);
      const lane = el.previousElementSibling;
      bg = lane && lane.tagName === "rect" ? rgb(getComputedStyle(lane).fill) : behind(el.ownerSVGElement);
    } else {
      fg = rgb(style.color);
      bg = behind(el);
    }
    const r = ratio(fg.slice(0, 3), bg);
    if (r < 4.5) found.push(`contrast ${r.toFixed(2)} < 4.5: ${short(el)}`);
  }
  return found;
})()
