// Small DOM helpers: build elements without innerHTML (so API text is never parsed as HTML).

/**
 * h('p', {class: 'x', dataset: {testid: 'y'}, onclick: fn}, 'text', child, ...)
 * Attributes starting with "on" become event listeners; `dataset` fills data-*;
 * null/undefined/false attributes and children are skipped.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === 'dataset') Object.assign(el.dataset, value);
    else if (name.startsWith('on') && typeof value === 'function') el.addEventListener(name.slice(2), value);
    else if (name === 'text') el.textContent = value;
    else if (value === true) el.setAttribute(name, '');
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
}

/** Replaces every child of `el` with `children`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/**
 * A data table: caption, column headers (th scope=col) and rows.
 * columns: [{key, label, numeric?, format?(value,row)}]; rowAttrs(row) adds attributes to each tr.
 */
export function table({ caption, columns, rows, testid, empty = 'Nothing to show yet.', rowAttrs }) {
  const head = h('thead', {}, h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.numeric ? 'num' : null }, c.label))));
  const body = h('tbody', {});
  for (const row of rows) {
    body.append(h('tr', rowAttrs ? rowAttrs(row) : {}, columns.map((c) => {
      const value = c.format ? c.format(row[c.key], row) : row[c.key];
      return h('td', { class: c.numeric ? 'num' : null, dataset: { col: c.key } }, value ?? '—');
    })));
  }
  // An empty table keeps its headers and no rows (so row counts stay true); a note says why.
  return h('div', { class: 'table-wrap' },
    h('table', { dataset: testid ? { testid } : {} }, h('caption', {}, caption), head, body),
    rows.length ? null : h('p', { class: 'empty' }, empty));
}

/** A status line for async work; role=status makes screen readers announce it politely. */
export function status(text = '', testid) {
  return h('p', { class: 'status', role: 'status', 'aria-live': 'polite', dataset: testid ? { testid } : {} }, text);
}

/** An alert for errors (announced at once). */
export function alert(text) {
  return h('p', { class: 'alert', role: 'alert' }, text);
}
