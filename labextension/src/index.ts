/**
 * "Submit as batch job": a notebook toolbar button and a palette command that open a
 * dialog (slice, parameters, sweep, target, walltime, name) and send the notebook to
 * the session server's gpuaf/submit route (the gpuaf.labext server extension), which
 * freezes the environment and forwards the job to the portal.
 */
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  Dialog,
  ICommandPalette,
  ToolbarButton,
  showDialog
} from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ServerConnection } from '@jupyterlab/services';
import { Widget } from '@lumino/widgets';

const COMMAND = 'gpuaf:submit-notebook';
const LABEL = 'Submit as batch job';

interface ISlice {
  name: string;
  display_name: string;
  availability?: { capacity?: number; free?: number; waiting?: number };
}

interface ITarget {
  name: string;
  label: string;
}

interface IDefault {
  text: string;
  json: boolean;
}

interface IParameters {
  parameters: Record<string, unknown>;
  defaults: Record<string, IDefault>;
}

/** What the user typed; kept across retries of the same dialog. */
interface IState {
  key: string;
  slice: string;
  params: Record<string, string>;
  sweepName: string;
  sweepValues: string;
  target: string;
  walltime: string;
  name: string;
  error: string;
}

interface IReply {
  ok: boolean;
  status: number;
  body: any;
}

async function call(path: string, init: RequestInit = {}): Promise<IReply> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'gpuaf', path);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    return { ok: false, status: 0, body: { detail: `No answer from the server: ${error}` } };
  }
  const text = await response.text();
  let body: any;
  try {
    body = text ? JSON.parse(text) : {};
  } catch {
    body = { detail: text.slice(0, 500) };
  }
  return { ok: response.ok, status: response.status, body };
}

function problem(reply: IReply): string {
  const detail = reply.body?.detail ?? reply.body?.message;
  const text = typeof detail === 'string' ? detail : JSON.stringify(detail ?? reply.body);
  return `${text} (HTTP ${reply.status})`;
}

function newKey(): string {
  const c: Crypto = window.crypto;
  if (typeof c.randomUUID === 'function') {
    return c.randomUUID(); // only in secure contexts (https, localhost)
  }
  const b = Array.from(c.getRandomValues(new Uint8Array(16)));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = b.map(x => x.toString(16).padStart(2, '0')).join('');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

function prefill(d: IDefault, value: unknown): string {
  return d.json ? JSON.stringify(value) : d.text;
}

function canRun(s: ISlice): boolean {
  return (s.availability?.capacity ?? 1) > 0;
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Record<string, string> = {},
  text = ''
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    node.setAttribute(k, v);
  }
  if (text) {
    node.textContent = text;
  }
  return node;
}

/** The dialog's form; getValue() reads it back into the state. */
class SubmitBody extends Widget implements Dialog.IBodyWidget<IState> {
  constructor(
    private state: IState,
    slices: ISlice[] | null,
    slicesError: string,
    params: IParameters,
    targets: ITarget[]
  ) {
    super();
    this.addClass('gpuaf-submit-form');
    const n = this.node;
    const row = (label: string, id: string, input: HTMLElement) => {
      n.append(el('label', { for: id }, label), input);
    };
    if (state.error) {
      n.append(el('div', { class: 'gpuaf-submit-error', role: 'alert' }, state.error));
    }
    const slice = el('select', { id: 'gpuaf-slice', name: 'slice' });
    for (const s of slices ?? []) {
      const a = s.availability ?? {};
      const text = `${s.display_name} — ${a.free ?? '?'} free · ${a.waiting ?? '?'} waiting`;
      const option = el('option', { value: s.name }, text);
      option.disabled = !canRun(s);
      option.selected = s.name === state.slice;
      slice.append(option);
    }
    row('Slice', 'gpuaf-slice', slice);
    if (slicesError) {
      n.append(el('div', { class: 'gpuaf-submit-error' }, slicesError));
    }

    n.append(el('h3', {}, 'Parameters'));
    const names = Object.keys(params.defaults);
    if (names.length === 0) {
      n.append(
        el('div', { class: 'gpuaf-submit-hint' }, 'This notebook has no cell tagged "parameters".')
      );
    }
    for (const name of names) {
      const input = el('input', {
        id: `gpuaf-param-${name}`,
        'data-name': name,
        class: 'gpuaf-param',
        type: 'text',
        spellcheck: 'false'
      });
      input.value = state.params[name];
      row(name, input.id, input);
    }
    if (names.length) {
      n.append(
        el('div', { class: 'gpuaf-submit-hint' },
          'Values are JSON: 0.1, 10, true, "text", [1, 2]. Unchanged values keep the notebook\'s default.')
      );
      n.append(el('h3', {}, 'Sweep (optional)'));
      const sweep = el('select', { id: 'gpuaf-sweep-name' });
      sweep.append(el('option', { value: '' }, '(no sweep)'));
      for (const name of names) {
        const option = el('option', { value: name }, name);
        option.selected = name === state.sweepName;
        sweep.append(option);
      }
      row('Sweep over', sweep.id, sweep);
      const sweepOnly = () => {
        // the swept parameter takes its values from the sweep, not from its own field
        n.querySelectorAll<HTMLInputElement>('input.gpuaf-param').forEach(input => {
          input.disabled = input.dataset.name === sweep.value;
        });
      };
      sweep.addEventListener('change', sweepOnly);
      sweepOnly();
      const values = el('input', { id: 'gpuaf-sweep-values', type: 'text', placeholder: '0.1, 0.01 or [0.1, 0.01]' });
      values.value = state.sweepValues;
      row('Values', values.id, values);
      n.append(el('div', { class: 'gpuaf-submit-hint' }, 'One job item per value.'));
    }

    n.append(el('h3', {}, 'Job'));
    const target = el('select', { id: 'gpuaf-target' });
    for (const t of targets) {
      const option = el('option', { value: t.name }, t.label);
      option.selected = t.name === state.target;
      target.append(option);
    }
    row('Target', target.id, target);
    const walltime = el('input', { id: 'gpuaf-walltime', type: 'text', placeholder: "the slice's walltime, e.g. 2h" });
    walltime.value = state.walltime;
    row('Walltime', walltime.id, walltime);
    const name = el('input', { id: 'gpuaf-name', type: 'text', placeholder: 'the notebook\'s name' });
    name.value = state.name;
    row('Name', name.id, name);
  }

  private value(id: string): string {
    const node = this.node.querySelector(`#${id}`) as HTMLInputElement | null;
    return node ? node.value : '';
  }

  getValue(): IState {
    const params: Record<string, string> = {};
    this.node.querySelectorAll<HTMLInputElement>('input.gpuaf-param').forEach(input => {
      params[input.dataset.name as string] = input.value;
    });
    return {
      ...this.state,
      slice: this.value('gpuaf-slice'),
      params,
      sweepName: this.value('gpuaf-sweep-name'),
      sweepValues: this.value('gpuaf-sweep-values'),
      target: this.value('gpuaf-target') || 'local',
      walltime: this.value('gpuaf-walltime').trim(),
      name: this.value('gpuaf-name').trim()
    };
  }
}

function request(path: string, state: IState, params: IParameters): object {
  const parameters: Record<string, string> = {};
  for (const [name, text] of Object.entries(state.params)) {
    const d = params.defaults[name];
    if (name !== state.sweepName && text !== prefill(d, params.parameters[name])) {
      parameters[name] = text;
    }
  }
  const sweep: Record<string, string> = {};
  if (state.sweepName) {
    sweep[state.sweepName] = state.sweepValues;
  }
  return {
    path,
    slice: state.slice,
    parameters,
    sweep,
    target: state.target,
    walltime: state.walltime || null,
    name: state.name || null,
    idempotency_key: state.key
  };
}

const FINAL = ['succeeded', 'failed', 'cancelled'];

function describeJob(job: any): string {
  const items: any[] = Array.isArray(job.items) ? job.items : [];
  const counts = Object.entries(job.counts ?? {})
    .map(([state, n]) => `${n} ${state}`)
    .join(', ');
  const reason = job.reason ? ` (${job.reason})` : '';
  return `Job ${job.name ?? ''} (${job.id}): ${job.state}${reason}. ` +
    `${items.length} item${items.length === 1 ? '' : 's'}${counts ? `: ${counts}` : ''}.`;
}

/** The submitted job, followed every few seconds while the dialog is open. */
async function showJob(job: any): Promise<void> {
  const body = el('div', { class: 'gpuaf-submit-result' });
  const status = el('p', { class: 'gpuaf-job-status', role: 'status', 'aria-live': 'polite' },
    describeJob(job));
  body.append(status);
  if (job.url) {
    const link = el('a', { href: job.url, target: '_blank', rel: 'noopener', class: 'gpuaf-job-link' },
      'Open the job\'s page (items, logs, executed notebooks)');
    const p = el('p');
    p.append(link);
    body.append(p);
  }
  let open = true;
  const follow = async (): Promise<void> => {
    let current = job;
    while (open && !FINAL.includes(current.state)) {
      await new Promise(resolve => setTimeout(resolve, 3000));
      const reply = await call(`jobs/${encodeURIComponent(job.id)}`);
      if (!open) {
        return;
      }
      if (reply.ok) {
        current = reply.body;
        status.textContent = describeJob(current);
        status.dataset.state = current.state;
      }
    }
  };
  status.dataset.state = job.state;
  void follow();
  const widget = new Widget({ node: body });
  try {
    await showDialog({ title: 'Batch job submitted', body: widget, buttons: [Dialog.okButton()] });
  } finally {
    open = false;
  }
}

async function submit(panel: NotebookPanel): Promise<void> {
  const path = panel.context.path;
  if (panel.context.model.dirty) {
    await panel.context.save();
  }
  const [slicesReply, paramsReply, targetsReply] = await Promise.all([
    call('slices'),
    call(`parameters?path=${encodeURIComponent(path)}`),
    call('targets')
  ]);
  const targets: ITarget[] = targetsReply.ok && Array.isArray(targetsReply.body) && targetsReply.body.length
    ? targetsReply.body
    : [{ name: 'local', label: 'local (this facility)' }];
  if (!paramsReply.ok) {
    await showDialog({ title: LABEL, body: problem(paramsReply), buttons: [Dialog.okButton()] });
    return;
  }
  const params = paramsReply.body as IParameters;
  const slices = slicesReply.ok && Array.isArray(slicesReply.body) ? (slicesReply.body as ISlice[]) : null;
  const slicesError = slices ? '' : `The slices could not be read: ${problem(slicesReply)}`;
  const first = (slices ?? []).find(s => canRun(s) && (s.availability?.free ?? 0) > 0) ??
    (slices ?? []).find(canRun);
  let state: IState = {
    key: newKey(),
    slice: first?.name ?? '',
    params: Object.fromEntries(
      Object.entries(params.defaults).map(([n, d]) => [n, prefill(d, params.parameters[n])])
    ),
    sweepName: '',
    sweepValues: '',
    target: 'local',
    walltime: '',
    name: '',
    error: ''
  };
  for (;;) {
    const result = await showDialog<IState>({
      title: `${LABEL}: ${panel.context.localPath.split('/').pop()}`,
      body: new SubmitBody(state, slices, slicesError, params, targets),
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Submit' })],
      focusNodeSelector: '#gpuaf-slice'
    });
    if (!result.button.accept || !result.value) {
      return;
    }
    state = { ...result.value, error: '' };
    const reply = await call('submit', {
      method: 'POST',
      body: JSON.stringify(request(path, state, params))
    });
    if (reply.ok) {
      await showJob(reply.body);
      return;
    }
    state.error = `Not submitted: ${problem(reply)}`;
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'gpuaf-labextension:plugin',
  description: 'Submit the open notebook as a batch job on a gpuaf slice.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ICommandPalette],
  activate: (app: JupyterFrontEnd, tracker: INotebookTracker, palette: ICommandPalette | null) => {
    app.commands.addCommand(COMMAND, {
      label: LABEL,
      caption: 'Run this notebook as a batch job on a slice, with parameters or a sweep',
      isEnabled: () => tracker.currentWidget !== null,
      execute: () => (tracker.currentWidget ? submit(tracker.currentWidget) : undefined)
    });
    palette?.addItem({ command: COMMAND, category: 'Notebook Operations' });
    tracker.widgetAdded.connect((_sender, panel) => {
      const button = new ToolbarButton({
        className: 'gpuaf-submit-button',
        label: LABEL,
        tooltip: 'Submit this notebook as a batch job',
        onClick: () => void submit(panel)
      });
      panel.toolbar.insertItem(10, 'gpuafSubmit', button);
    });
  }
};

export default plugin;
