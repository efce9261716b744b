// The WebSocket: connects only when signed in, joins symbol rooms, reconnects with back-off,
// and tells listeners about pushes ("quote", "prediction", "trade") and its state in words.

import { loadConfig } from './config.js';
import * as session from './session.js';
import { request } from './api.js';

const MIN_DELAY = 1000;
const MAX_DELAY = 30000;

// The server cuts a connection that sends more than WS_MAX_MESSAGES_PER_SECOND (20 by default),
// and a market page joins a room per listed symbol: messages leave at most SEND_PER_SECOND in any
// second, the rest wait in the outbox.
const SEND_PER_SECOND = 10;
// A room left is unsubscribed this long after, and not at all when joined again meanwhile (the next
// page often wants the same room): the server may handle one socket's messages out of order, and
// an unsubscribe handled after the subscribe that followed it would leave the room unjoined while
// the page believes it joined.
const LEAVE_AFTER_MS = 2000;

const rooms = new Map(); // symbol -> number of page parts that want it (0: leaving)
const leaving = new Map(); // symbol -> the timer of its unsubscribe
const acked = new Set(); // rooms the server confirmed ("subscribed") on the current socket
const outbox = [];
let sentAt = []; // when the messages of the last second left
let flushTimer = null;
const listeners = new Map(); // type -> Set of functions
let socket = null;
let opened = false; // did the current socket ever open?
let pending = false; // connect() is reading the config
let attempt = 0;
let retryTimer = null;
let countdownTimer = null;
let state = { kind: 'offline', text: 'Offline: sign in for live updates' };

/** on('quote', fn) -> unsubscribe. Types: quote, prediction, trade, state, message. */
export function on(type, fn) {
  if (!listeners.has(type)) listeners.set(type, new Set());
  listeners.get(type).add(fn);
  return () => listeners.get(type).delete(fn);
}

function emit(type, data) {
  for (const fn of listeners.get(type) || []) {
    try {
      fn(data);
    } catch (err) {
      console.warn('live listener failed', err);
    }
  }
}

export function currentState() {
  return state;
}

function setState(kind, text) {
  state = { kind, text };
  emit('state', state);
}

/** Joins a symbol's room (counted: the room is left when every joiner has left). -> leave(). */
export function join(symbol) {
  const s = symbol.toUpperCase();
  const n = (rooms.get(s) || 0) + 1;
  rooms.set(s, n);
  if (leaving.has(s)) {
    clearTimeout(leaving.get(s)); // still in the room: nothing to send
    leaving.delete(s);
  } else if (n === 1) send({ action: 'subscribe', symbol: s });
  let left = false;
  return () => {
    if (left) return;
    left = true;
    const remaining = (rooms.get(s) || 1) - 1;
    rooms.set(s, remaining);
    if (remaining > 0) return;
    leaving.set(s, setTimeout(() => {
      leaving.delete(s);
      rooms.delete(s);
      acked.delete(s);
      send({ action: 'unsubscribe', symbol: s });
    }, LEAVE_AFTER_MS));
  };
}

/**
 * Resolves true once the server confirmed the room, false after `timeoutMs` or at once when
 * there is no live connection to wait for (signed out, or waiting to reconnect).
 */
export function ready(symbol, timeoutMs = 5000) {
  const s = symbol.toUpperCase();
  if (acked.has(s)) return Promise.resolve(true);
  if (!['live', 'connecting'].includes(state.kind)) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (value) => {
      clearTimeout(timer);
      offMessage();
      offState();
      resolve(value);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    const offMessage = on('subscribed', (m) => m.symbol === s && done(true));
    const offState = on('state', (st) => !['live', 'connecting'].includes(st.kind) && done(false));
  });
}

function send(message) {
  if (!socket || socket.readyState !== WebSocket.OPEN) return; // a reconnect joins every room
  outbox.push(message);
  if (!flushTimer) flush();
}

function flush() {
  flushTimer = null;
  const now = Date.now();
  sentAt = sentAt.filter((t) => now - t < 1000);
  while (outbox.length && sentAt.length < SEND_PER_SECOND) {
    if (!socket || socket.readyState !== WebSocket.OPEN) return dropOutbox();
    socket.send(JSON.stringify(outbox.shift()));
    sentAt.push(now);
  }
  if (outbox.length) flushTimer = setTimeout(flush, Math.max(1000 - (now - sentAt[0]), 10));
}

function dropOutbox() {
  outbox.length = 0;
  clearTimeout(flushTimer);
  flushTimer = null;
}

/** Opens the socket if signed in and not already open; closes it when signed out. */
export async function sync() {
  if (!session.signedIn()) {
    stop();
    setState('offline', 'Offline: sign in for live updates');
    return;
  }
  if (socket || retryTimer || pending) return;
  await connect();
}

async function connect() {
  clearTimers();
  const token = session.token();
  if (!token) return sync();
  let wsUrl;
  pending = true;
  try {
    ({ wsUrl } = await loadConfig());
  } catch {
    return scheduleReconnect();
  } finally {
    pending = false;
  }
  if (session.token() !== token) return sync();
  if (!wsUrl) {
    setState('offline', 'Offline: live updates are not configured');
    return;
  }
  setState('connecting', 'Connecting…');
  opened = false;
  const ws = new WebSocket(`${wsUrl}${wsUrl.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`);
  socket = ws;
  ws.addEventListener('open', () => {
    if (socket !== ws) return;
    opened = true;
    attempt = 0;
    setState('live', 'Live');
    for (const symbol of rooms.keys()) send({ action: 'subscribe', symbol });
  });
  ws.addEventListener('message', (event) => {
    let data;
    try {
      data = JSON.parse(event.data);
    } catch {
      return;
    }
    if (data && data.type === 'subscribed' && data.symbol) acked.add(data.symbol);
    if (data && data.type === 'unsubscribed' && data.symbol) {
      acked.delete(data.symbol);
      // An unsubscribe handled after the subscribe that followed it: join the room again.
      if ((rooms.get(data.symbol) || 0) > 0 && !leaving.has(data.symbol)) {
        send({ action: 'subscribe', symbol: data.symbol });
      }
    }
    emit('message', data);
    if (data && data.type) emit(data.type, data);
  });
  ws.addEventListener('close', () => {
    if (socket !== ws) return; // closed on purpose
    acked.clear();
    dropOutbox();
    socket = null;
    if (!opened) refusedCheck(token);
    else scheduleReconnect();
  });
  ws.addEventListener('error', () => {
    // A close event always follows; nothing to do here.
  });
}

/** Refused before opening: an expired or revoked token means sign in again; else retry later. */
async function refusedCheck(token) {
  if (session.token() !== token) return sync();
  if (session.tokenExpired(token)) {
    session.expire();
    return;
  }
  try {
    await request('GET', '/api/users/profile', { auth: true }); // a 401 here expires the session
  } catch (err) {
    if (err.status === 401) return;
  }
  scheduleReconnect();
}

function scheduleReconnect() {
  if (!session.signedIn()) return sync();
  const base = Math.min(MAX_DELAY, MIN_DELAY * 2 ** attempt);
  const delay = Math.round(base / 2 + Math.random() * (base / 2)); // "equal jitter"
  attempt += 1;
  const until = Date.now() + delay;
  const tick = () => {
    const seconds = Math.max(1, Math.ceil((until - Date.now()) / 1000));
    setState('waiting', `Reconnecting in ${seconds} s`);
  };
  tick();
  countdownTimer = setInterval(tick, 1000);
  retryTimer = setTimeout(() => {
    retryTimer = null;
    connect();
  }, delay);
}

function clearTimers() {
  clearTimeout(retryTimer);
  clearInterval(countdownTimer);
  retryTimer = null;
  countdownTimer = null;
}

function stop() {
  clearTimers();
  acked.clear();
  dropOutbox();
  attempt = 0;
  if (socket) {
    const ws = socket;
    socket = null;
    ws.close(1000, 'signed out');
  }
}

/** Reconnect at once (e.g. after signing in with a new token). */
export function restart() {
  stop();
  sync();
}
