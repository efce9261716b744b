// Hash router: "#/market/SPX" -> the page registered for "market" with params ["SPX"].
// A page is render(main, params, ctx); ctx.onLeave(fn) registers clean-up (rooms, charts,
// timers) run before the next page, and ctx.alive tells late async work it is still wanted.

const routes = new Map();
const leaving = [];
let current_ = null;
let onRouteChange = () => {};

export function route(name, render, title) {
  routes.set(name, { render, title });
}

/** fn(name) is called on every navigation (the nav marks the current link). */
export function onChange(fn) {
  onRouteChange = fn;
}

/** Whether the hash is a page ("#/...") rather than an in-page anchor such as the skip link's. */
function isRoute(hash) {
  return hash === '' || hash === '#' || hash.startsWith('#/');
}

export function current() {
  const hash = isRoute(location.hash) ? location.hash : (lastRoute || '');
  const parts = hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  return { name: parts[0] || 'market', params: parts.slice(1) };
}

function leave() {
  if (current_) current_.alive = false;
  for (const fn of leaving.splice(0)) {
    try {
      fn();
    } catch (err) {
      console.warn('page clean-up failed', err);
    }
  }
}

export async function render() {
  leave();
  const main = document.getElementById('main');
  const { name, params } = current();
  const page = routes.get(name) || routes.get('notfound');
  const ctx = { alive: true, onLeave: (fn) => leaving.push(fn) };
  current_ = ctx;
  document.title = `${page.title} · stockpred`;
  main.replaceChildren();
  onRouteChange(name);
  try {
    await page.render(main, params, ctx);
  } catch (err) {
    if (ctx.alive) {
      const p = document.createElement('p');
      p.className = 'alert';
      p.setAttribute('role', 'alert');
      p.textContent = `Something went wrong: ${err.message}`;
      main.append(p);
    }
  }
}

/** Goes to `hash`, re-rendering when already there. */
export function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

let lastRoute = null;

export function start() {
  window.addEventListener('hashchange', () => {
    if (!isRoute(location.hash)) return; // an in-page anchor: the browser moves focus there
    lastRoute = location.hash;
    render();
  });
  lastRoute = isRoute(location.hash) ? location.hash : null;
  render();
}
