import { lastWrite } from './api.js';

// Live is the page's one WebSocket to /api/v1/ws. Views subscribe to
// topics; Live remembers the last position each topic reached and, after a
// reconnect or when the server says the page fell behind ("resync"),
// subscribes again from there so nothing is missed.
export class Live {
  constructor(onState, { paused = false } = {}) {
    this.topics = new Map(); // topic -> {after, handlers: Set}
    this.onState = onState || (() => {});
    this.retry = 0;
    this.ws = null;
    this.closed = paused;
    if (!paused) this.connect();
  }

  connect() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const ws = new WebSocket(`${proto}//${location.host}/api/v1/ws`);
    this.ws = ws;
    this.onState('connecting');
    ws.addEventListener('open', () => {
      this.retry = 0;
      this.onState('live');
      for (const [topic, s] of this.topics) this.send({ op: 'subscribe', topic, after: s.after });
    });
    ws.addEventListener('message', (ev) => {
      let m;
      try { m = JSON.parse(ev.data); } catch { return; }
      this.dispatch(m);
    });
    ws.addEventListener('close', () => {
      if (this.ws !== ws || this.closed) return;
      this.onState('reconnecting');
      const delay = Math.min(10000, 250 * 2 ** this.retry++) + Math.random() * 250;
      this.timer = setTimeout(() => this.connect(), delay);
    });
  }

  // pause closes the socket and stops reconnecting (signed out: the server
  // would refuse it) until restart.
  pause() {
    this.closed = true;
    clearTimeout(this.timer);
    if (this.ws) this.ws.close();
    this.ws = null;
  }

  // restart reconnects now (after signing in, the socket carries the new
  // session cookie).
  restart() {
    this.closed = false;
    clearTimeout(this.timer);
    const old = this.ws;
    this.retry = 0;
    this.connect();
    if (old) old.close();
  }

  send(m) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(m));
  }

  dispatch(m) {
    if (m.op === 'resync') {
      for (const [topic, s] of this.topics) this.send({ op: 'subscribe', topic, after: s.after });
      return;
    }
    const s = this.topics.get(m.topic);
    if (!s) return;
    if (!m.op && typeof m.position === 'number') {
      // Log topics count lines; the others log positions. Both only grow.
      s.after = Math.max(s.after, m.position);
    }
    for (const fn of s.handlers) {
      try { fn(m); } catch (e) { console.error(e); }
    }
  }

  // subscribe calls fn with every message of topic (after: the position
  // or log sequence already seen) and returns the function that stops.
  subscribe(topic, fn, after = 0) {
    let s = this.topics.get(topic);
    if (!s) {
      // State topics: a snapshot that includes this page's own writes.
      if (after === 0 && !topic.startsWith('log:') && topic !== 'audit') after = lastWrite();
      s = { after, handlers: new Set() };
      this.topics.set(topic, s);
      this.send({ op: 'subscribe', topic, after });
    }
    s.handlers.add(fn);
    return () => {
      s.handlers.delete(fn);
      if (s.handlers.size === 0) {
        this.topics.delete(topic);
        this.send({ op: 'unsubscribe', topic });
      }
    };
  }
}
