// Monitoring: live charts of every server and application (CPU, memory,
// network, restarts or disk) over the last hour or the last day, from
// GET /api/v1/monitor/…; refreshed every ten seconds.
import { h, replace } from '../dom.js';
import { api, enc } from '../api.js';
import { lineChart, fmt } from '../chart.js';

const RANGES = { '1h': 36e5, '1d': 864e5 };
const C = { cpu: '#2f6fdd', mem: '#1d9a5b', limit: '#9aa4b5', rx: '#8a4fd6', tx: '#d97706', disk: '#c42b2b', restarts: '#c42b2b' };

function charts(series, span) {
  const at = series.at;
  const step = series.step_seconds;
  const out = [lineChart(at, [{ label: 'CPU', values: series.cpu_percent, color: C.cpu }],
    { title: series.kind === 'server' ? 'CPU (all cores)' : 'CPU (100% = one core)', format: fmt.percent, span, step,
      max: series.kind === 'server' ? 100 : undefined })];
  const mem = [{ label: 'used', values: series.mem_bytes, color: C.mem }];
  if (series.kind === 'server') mem.push({ label: 'total', values: series.mem_limit_bytes, color: C.limit });
  out.push(lineChart(at, mem, { title: 'Memory', format: fmt.bytes, binary: true, span, step }));
  out.push(lineChart(at, [{ label: 'in', values: series.net_rx_bps, color: C.rx }, { label: 'out', values: series.net_tx_bps, color: C.tx }],
    { title: 'Network', format: fmt.rate, binary: true, span, step }));
  if (series.kind === 'server') {
    out.push(lineChart(at, [{ label: 'used', values: series.disk_used_bytes, color: C.disk },
      { label: 'size', values: series.disk_total_bytes, color: C.limit }], { title: 'Disk (data directory)', format: fmt.bytes, binary: true, span, step }));
  } else {
    out.push(lineChart(at, [{ label: 'restarts', values: series.restarts, color: C.restarts }], { title: 'Container restarts', format: fmt.count, span, step }));
  }
  return out;
}

// monitoringView shows every target, or only app when given.
export function monitoringView(el, ui, params) {
  let range = params.get('range') in RANGES ? params.get('range') : '1h';
  const only = params.get('app') || '';
  const body = h('div', { class: 'stack' }, h('p', { class: 'meta' }, 'Loading…'));
  const rangeButtons = Object.keys(RANGES).map((r) => h('button', {
    type: 'button', class: r === range ? '' : 'secondary', 'aria-pressed': String(r === range),
    onclick: () => { range = r; setHash(); refresh(); },
  }, r === '1h' ? 'Last hour' : 'Last day'));
  const setHash = () => {
    const q = new URLSearchParams({ range });
    if (only) q.set('app', only);
    history.replaceState(null, '', `#/monitoring?${q}`);
    rangeButtons.forEach((b, i) => {
      const on = Object.keys(RANGES)[i] === range;
      b.className = on ? '' : 'secondary';
      b.setAttribute('aria-pressed', String(on));
    });
  };
  replace(el,
    h('div', { class: 'toolbar' }, h('div', {}, h('h1', {}, only ? `Monitoring: ${only}` : 'Monitoring'),
      h('p', { class: 'sub' }, 'Sampled every few seconds from the Docker Engine and the host; updated live.')),
    h('div', { class: 'actions', role: 'group', 'aria-label': 'Range' }, rangeButtons)),
    body);

  let stopped = false;
  async function refresh() {
    try {
      const { targets } = await api('GET', '/monitor/targets');
      let list = targets.filter((t) => !only || (t.kind === 'app' && t.target === only));
      if (only && !list.length) list = [{ kind: 'app', target: only }];
      list.sort((a, b) => (a.kind === b.kind ? a.target.localeCompare(b.target) : a.kind === 'server' ? -1 : 1));
      const sections = await Promise.all(list.map(async (t) => {
        const series = await api('GET', `/monitor/${enc(t.kind)}/${enc(t.target)}?range=${range}`);
        const title = t.kind === 'server' ? `Server ${t.target}` : h('a', { href: `#/apps/${enc(t.target)}` }, t.target);
        const meta = t.kind === 'app' && t.containers !== undefined ? `${t.containers} container${t.containers === 1 ? '' : 's'}` : '';
        return h('section', { class: 'panel', dataset: { target: `${t.kind}/${t.target}` } },
          h('h2', {}, title, ' ', h('span', { class: 'meta' }, meta)),
          series.at.length ? h('div', { class: 'charts' }, charts(series, RANGES[range]))
            : h('p', { class: 'empty' }, 'No samples in this range yet.'));
      }));
      if (stopped) return;
      replace(body, sections.length ? sections : h('p', { class: 'empty' }, 'Nothing sampled yet: monitoring may be turned off (--monitor-interval 0).'));
    } catch (err) {
      if (!stopped) replace(body, h('p', { class: 'form-error' }, err.message));
    }
  }
  refresh();
  const timer = setInterval(refresh, 10000);
  return () => { stopped = true; clearInterval(timer); };
}
