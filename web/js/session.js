// The signed-in session: the bearer token (sessionStorage), the cached profile, and expiry.

const TOKEN_KEY = 'token';
const FLASH_KEY = 'flash';
const listeners = new Set();
let profile = null;

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function signedIn() {
  return Boolean(token());
}

export function setToken(value) {
  sessionStorage.setItem(TOKEN_KEY, value);
  sessionStorage.removeItem(FLASH_KEY);
  profile = null;
  notify();
}

/** Drops the token (and profile); `message` is shown once on the sign-in page. */
export function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  profile = null;
  if (message) sessionStorage.setItem(FLASH_KEY, message);
  notify();
}

export const EXPIRED = 'Your session has expired: please sign in again';

/** The token was refused (expired or revoked): back to sign-in with the message. */
export function expire() {
  signOut(EXPIRED);
  if (!location.hash.startsWith('#/signin')) location.hash = '#/signin';
}

/** The message for the sign-in page ("session expired"), kept until that page is left. */
export function flash() {
  return sessionStorage.getItem(FLASH_KEY);
}

export function clearFlash() {
  sessionStorage.removeItem(FLASH_KEY);
}

/** True when the token's own `exp` claim is in the past (no signature check: the API does that). */
export function tokenExpired(value = token()) {
  if (!value) return false;
  try {
    const payload = value.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const claims = JSON.parse(atob(payload.padEnd(Math.ceil(payload.length / 4) * 4, '=')));
    return typeof claims.exp === 'number' && claims.exp * 1000 <= Date.now();
  } catch {
    return true; // not a token we can read: treat it as unusable
  }
}

export function cachedProfile() {
  return profile;
}

export function setProfile(value) {
  profile = value;
  notify();
}

export function isAdmin() {
  return Boolean(profile && Array.isArray(profile.roles) && profile.roles.includes('admin'));
}

/** Called whenever the token or profile changes (the nav and the WebSocket listen). */
export function onChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function notify() {
  for (const fn of listeners) fn();
}
