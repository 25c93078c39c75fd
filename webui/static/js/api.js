// api calls the REST API under /api/v1 with the session cookie and, on
// writes, the CSRF header.

export class APIError extends Error {
  constructor(status, detail) {
    super(detail.message || `HTTP ${status}`);
    this.status = status;
    this.code = detail.code || '';
    this.field = detail.field || '';
  }
}

let csrf = '';
let written = 0;

// lastWrite is the highest log position this page's writes produced: state
// subscriptions ask for a snapshot at least that recent (read your writes).
export function lastWrite() { return written; }

// setCSRF remembers the CSRF token a login or session answer carried.
export function setCSRF(token) { csrf = token || ''; }

function csrfToken() {
  if (csrf) return csrf;
  for (const part of document.cookie.split(';')) {
    const [k, v] = part.trim().split('=');
    if (k === 'berth_csrf' || k === 'csrf_token') return decodeURIComponent(v || '');
  }
  return '';
}

export async function api(method, path, body, headers = {}) {
  const h = { Accept: 'application/json', ...headers };
  if (body !== undefined) h['Content-Type'] = 'application/json';
  if (method !== 'GET') {
    const t = csrfToken();
    if (t) h['X-CSRF-Token'] = t;
  }
  const res = await fetch('/api/v1' + path, {
    method, headers: h, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!res.ok) {
    const err = new APIError(res.status, (data && data.error) || { message: text || res.statusText });
    if (res.status === 401) window.dispatchEvent(new CustomEvent('berth:unauthorized'));
    throw err;
  }
  if (data && typeof data.position === 'number' && data.position > written) written = data.position;
  return data;
}

export const enc = encodeURIComponent;
