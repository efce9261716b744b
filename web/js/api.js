// REST client: JSON in and out, the bearer token, errors as ApiError, 401 -> session expired.

import { loadConfig } from './config.js';
import * as session from './session.js';

/** An answer other than 2xx (or no answer at all: status 0). */
export class ApiError extends Error {
  constructor(status, body, fallback) {
    super((body && body.error) || fallback || `Request failed (${status})`);
    this.status = status;
    this.body = body || {};
    this.fields = (body && body.fields) || {};
  }
}

/**
 * request('GET', '/api/stocks', {query, body, auth, headers}) -> {status, body, headers}.
 * auth: true sends the token; a 401 then drops it and goes to sign-in (and rejects).
 */
export async function request(method, path, { query, body, auth = false, headers = {} } = {}) {
  const { apiUrl } = await loadConfig();
  const url = new URL(apiUrl + path, location.origin);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== '') url.searchParams.set(k, v);
  }
  const init = { method, headers: { Accept: 'application/json', ...headers } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  if (auth) {
    const token = session.token();
    if (!token || session.tokenExpired(token)) {
      session.expire();
      throw new ApiError(401, { error: session.EXPIRED });
    }
    init.headers.Authorization = `Bearer ${token}`;
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch {
    throw new ApiError(0, null, 'Cannot reach the server: check your connection and try again.');
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (auth && response.status === 401) {
    session.expire();
    throw new ApiError(401, { error: session.EXPIRED });
  }
  if (!response.ok) throw new ApiError(response.status, data);
  return { status: response.status, body: data || {}, headers: response.headers };
}

export const get = (path, options) => request('GET', path, options).then((r) => r.body);
export const post = (path, body, options = {}) => request('POST', path, { ...options, body }).then((r) => r.body);

/** The profile of the signed-in user (cached for the session). */
export async function profile() {
  const cached = session.cachedProfile();
  if (cached) return cached;
  const value = await get('/api/users/profile', { auth: true });
  session.setProfile(value);
  return value;
}
