// Loads /config.json once: where the API (apiUrl, "" = same origin) and the WebSocket (wsUrl) are.

let loaded = null;

export function loadConfig() {
  loaded ??= fetch('/config.json', { cache: 'no-store' })
    .then((r) => (r.ok ? r.json() : Promise.reject(new Error(`config.json answered ${r.status}`))))
    .then((c) => ({ apiUrl: (c.apiUrl || '').replace(/\/$/, ''), wsUrl: c.wsUrl || '' }));
  return loaded;
}
