/**
 * Live updates for the portal's pages, loaded from the portal itself (no CDN).
 *
 * The pages are complete without it. On the admins' live-sessions page
 * (`table[data-live-url]`) it asks the portal API for the same rows every 15 s and
 * redraws each session's sparklines and latest figures; sessions that ended are marked.
 */

const SVG = 'http://www.w3.org/2000/svg';
const EVERY_MS = 15_000;

interface LiveSession {
  id: string;
  state: string;
  utilisation: number[];
  memory_mib: number[];
}

/** The same line as gpuaf.charts.sparkline draws on the server. */
export function sparkline(values: number[], top: number, label: string, unit: string): Element {
  if (values.length === 0) {
    const dash = document.createElement('span');
    dash.className = 'muted';
    dash.textContent = '—';
    return dash;
  }
  const width = 120;
  const height = 24;
  const step = width / Math.max(values.length - 1, 1);
  const scale = top || Math.max(...values) || 1;
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('role', 'img');
  svg.setAttribute('class', 'spark');
  svg.setAttribute('width', String(width));
  svg.setAttribute('height', String(height));
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  const title = document.createElementNS(SVG, 'title');
  const last = values[values.length - 1];
  title.textContent = `${label}: ${values.length} readings, latest ${last.toFixed(0)} ${unit}, ` +
    `highest ${Math.max(...values).toFixed(0)} ${unit}`;
  svg.append(title);
  const line = document.createElementNS(SVG, 'polyline');
  line.setAttribute('fill', 'none');
  line.setAttribute('stroke', '#0072B2');
  line.setAttribute('stroke-width', '1.5');
  line.setAttribute('points', values
    .map((v, i) => `${(i * step).toFixed(1)},${(height - 2 - Math.min(v / scale, 1) * (height - 4)).toFixed(1)}`)
    .join(' '));
  svg.append(line);
  return svg;
}

function fill(cell: Element | null, values: number[], top: number, label: string, unit: string): void {
  if (!cell) {
    return;
  }
  const latest = values.length ? ` ${values[values.length - 1].toFixed(0)} ${unit}` : '';
  cell.replaceChildren(sparkline(values, top, label, unit), document.createTextNode(latest));
}

async function refresh(table: HTMLElement, status: HTMLElement): Promise<void> {
  let rows: LiveSession[];
  try {
    const reply = await fetch(table.dataset.liveUrl ?? '', {
      credentials: 'same-origin',
      headers: { Accept: 'application/json' }
    });
    if (!reply.ok) {
      status.textContent = `Live updates paused: the portal answered ${reply.status}.`;
      return;
    }
    rows = (await reply.json()) as LiveSession[];
  } catch {
    status.textContent = 'Live updates paused: the portal did not answer.';
    return;
  }
  const byId = new Map(rows.map(r => [r.id, r]));
  for (const tr of Array.from(table.querySelectorAll<HTMLElement>('tr[data-session]'))) {
    const row = byId.get(tr.dataset.session ?? '');
    const user = tr.dataset.user ?? '';
    if (!row) {
      tr.classList.add('ended');
      const state = tr.querySelector('[data-state]');
      if (state) {
        state.textContent = 'ended';
      }
      continue;
    }
    const state = tr.querySelector('[data-state]');
    if (state && state.textContent !== row.state) {
      state.textContent = row.state;
      state.className = `state-${row.state}`;
    }
    fill(tr.querySelector('[data-util]'), row.utilisation, 100, `GPU utilisation of ${user}`, '%');
    fill(tr.querySelector('[data-mem]'), row.memory_mib, 0, `GPU memory of ${user}`, 'MiB');
  }
  status.textContent = `Updated ${new Date().toLocaleTimeString()}.`;
}

function start(): void {
  const table = document.querySelector<HTMLElement>('table[data-live-url]');
  const status = document.querySelector<HTMLElement>('[data-live-status]');
  if (!table || !status) {
    return;
  }
  status.textContent = `Updates every ${EVERY_MS / 1000} s.`;
  window.setInterval(() => void refresh(table, status), EVERY_MS);
}

if (document.readyState === 'loading') {
  document.addEventListener('DOMContentLoaded', start);
} else {
  start();
}
