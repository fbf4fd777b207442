// A small markdown renderer for model cards: headings, paragraphs, lists, tables, fenced code, inline code,
// bold, italics, links (http/https only) and images. All text is HTML-escaped before any markup is added,
// so a card can never inject HTML. Images become <img data-doc="NAME"> placeholders: the caller loads them
// through the API (only plain file names are kept).

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };

export function escapeHtml(text) {
  return String(text).replace(/[&<>"']/g, (c) => ESCAPES[c]);
}

const DOC_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

function inline(raw) {
  // Code spans first, so their content is left alone by the other rules.
  const codes = [];
  let text = raw.replace(/`([^`]+)`/g, (_, code) => {
    codes.push(`<code>${escapeHtml(code)}</code>`);
    return `\u0000${codes.length - 1}\u0000`;
  });
  text = escapeHtml(text);
  text = text.replace(/!\[([^\]]*)\]\(([^)\s]+)\)/g, (_, alt, src) =>
    DOC_NAME.test(src) ? `<img data-doc="${src}" alt="${alt}">` : alt);
  text = text.replace(/\[([^\]]+)\]\(([^)\s]+)\)/g, (_, label, href) =>
    /^https?:\/\//.test(href) ? `<a href="${href}" rel="noopener noreferrer" target="_blank">${label}</a>` : label);
  text = text.replace(/\*\*([^*]+)\*\*/g, "<strong>$1</strong>");
  text = text.replace(/(^|[^*\w])\*([^*\s][^*]*)\*(?!\w)/g, "$1<em>$2</em>");
  return text.replace(/\u0000(\d+)\u0000/g, (_, i) => codes[Number(i)]);
}

function cells(line, width = 0) {
  const parts = line.trim().replace(/^\|/, "").replace(/\|$/, "").split("|").map((c) => c.trim());
  // A stray "|" inside a cell (e.g. |a - b|) would add columns: keep it in the last cell instead.
  return width && parts.length > width ? [...parts.slice(0, width - 1), parts.slice(width - 1).join(" | ")] : parts;
}

/** Markdown text -> HTML string (safe to assign to innerHTML: every text run is escaped). */
export function renderMarkdown(source) {
  const lines = String(source).replace(/\r\n?/g, "\n").split("\n");
  const out = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) { i += 1; continue; }
    const fence = line.match(/^```/);
    if (fence) {
      const body = [];
      i += 1;
      while (i < lines.length && !/^```/.test(lines[i])) body.push(lines[i++]);
      i += 1;
      out.push(`<pre><code>${escapeHtml(body.join("\n"))}</code></pre>`);
      continue;
    }
    const heading = line.match(/^(#{1,6})\s+(.*)$/);
    if (heading) {
      const level = Math.min(6, heading[1].length + 1); // the page owns <h1>
      out.push(`<h${level}>${inline(heading[2])}</h${level}>`);
      i += 1;
      continue;
    }
    if (/^\s*\|/.test(line) && i + 1 < lines.length && /^\s*\|?\s*:?-{3,}/.test(lines[i + 1])) {
      const head = cells(line);
      i += 2;
      const rows = [];
      while (i < lines.length && /^\s*\|/.test(lines[i])) rows.push(cells(lines[i++], head.length));
      out.push("<table><thead><tr>" + head.map((c) => `<th scope="col">${inline(c)}</th>`).join("") +
        "</tr></thead><tbody>" + rows.map((r) => "<tr>" + r.map((c) => `<td>${inline(c)}</td>`).join("") +
        "</tr>").join("") + "</tbody></table>");
      continue;
    }
    const bullet = /^\s*[-*+]\s+/;
    const ordered = /^\s*\d+[.)]\s+/;
    if (bullet.test(line) || ordered.test(line)) {
      const pattern = bullet.test(line) ? bullet : ordered;
      const tag = pattern === bullet ? "ul" : "ol";
      const items = [];
      while (i < lines.length && pattern.test(lines[i])) items.push(lines[i++].replace(pattern, ""));
      out.push(`<${tag}>` + items.map((t) => `<li>${inline(t)}</li>`).join("") + `</${tag}>`);
      continue;
    }
    const para = [];
    while (i < lines.length && lines[i].trim() && !/^(#{1,6}\s|```|\s*\||\s*[-*+]\s|\s*\d+[.)]\s)/.test(lines[i])) {
      para.push(lines[i++]);
    }
    if (!para.length) para.push(lines[i++]);
    out.push(`<p>${inline(para.join(" "))}</p>`);
  }
  return out.join("\n");
}
