// data20 dashboard: a small single-page app over the data20 API. No framework, no
// network beyond this origin. Every piece of API data is put into the page as text
// (never as HTML), and job outputs are previewed in sandboxed frames.
'use strict';

(function () {
  const main = document.getElementById('main');
  const banner = document.getElementById('banner');
  let stopPage = () => {};

  // ---------------------------------------------------------------- helpers

  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else if (v === true) el.setAttribute(k, '');
      else el.setAttribute(k, String(v));
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  function show(...nodes) {
    main.replaceChildren(...nodes);
  }

  function fmtTime(s) {
    return s ? new Date(s).toLocaleString() : '—';
  }

  /** An API error as words for a person. */
  function describe(status, body, headers) {
    const e = (body && body.error) || {};
    if (status === 429) {
      const wait = headers && headers.get('retry-after');
      return `Too many requests from this address. Try again in ${wait || 'a few'} seconds.`;
    }
    if (status === 401) return 'This needs a valid API key.';
    if (status === 403) return 'Your API key may not do this (it lacks the scope).';
    if (status === 503) return `The server is temporarily unavailable: ${e.message || 'try again shortly'}.`;
    if (status === 413) return 'The request is too large (over 1 MiB).';
    return e.message || `The server answered ${status}.`;
  }

  class ApiError extends Error {
    constructor(status, body, headers) {
      super(describe(status, body, headers));
      this.status = status;
      this.body = body;
    }
  }

  /** The API key this tab holds (closed mode), sent on every API call. */
  function apiKey() {
    return sessionStorage.getItem('data20-token');
  }

  async function call(path, options) {
    const opts = Object.assign({}, options || {});
    opts.headers = Object.assign({}, opts.headers || {});
    const key = apiKey();
    if (key) opts.headers.authorization = `Bearer ${key}`;
    const r = await fetch(path, opts);
    const text = await r.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
    if (!r.ok) throw new ApiError(r.status, body, r.headers);
    return body;
  }

  /** One prompt at a time, however many calls got a 401 together. */
  let asking = null;

  /** An API call; on a 401 (closed mode) asks for a key once and tries again. */
  async function api(path, options) {
    try {
      return await call(path, options);
    } catch (e) {
      if (e.status !== 401) throw e;
      asking = asking || askToken().finally(() => { asking = null; });
      if (await asking) return call(path, options);
      throw e;
    }
  }

  function askToken() {
    const dialog = document.getElementById('token-dialog');
    const input = document.getElementById('token-input');
    return new Promise((resolve) => {
      input.value = '';
      document.getElementById('token-cancel').onclick = () => { dialog.close(); resolve(false); };
      document.getElementById('token-form').onsubmit = (ev) => {
        ev.preventDefault();
        sessionStorage.setItem('data20-token', input.value);
        dialog.close();
        resolve(true);
      };
      dialog.showModal();
      input.focus();
    });
  }

  /** POST JSON (with the key prompt of `api` on 401). */
  async function post(path, payload) {
    return api(path, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(payload),
    });
  }

  function errorBox(err) {
    return h('p', { class: 'form-error', role: 'alert' }, err.message || String(err));
  }

  function statusBadge(status) {
    return h('span', { class: `status ${status}`, 'data-status': status }, status);
  }

  // ---------------------------------------------------------------- health

  async function refreshHealth() {
    const el = document.getElementById('health');
    try {
      const r = await fetch('/api/health');
      const body = await r.json();
      el.className = `health ${body.status}`;
      el.textContent = body.status === 'ok' ? 'all systems ok' : `${body.status}: redis ${body.redis}, sqlite ${body.sqlite}`;
      if (body.status !== 'ok') {
        banner.hidden = false;
        banner.textContent = body.redis === 'down'
          ? 'Redis is down: the API answers from SQLite, caching is bypassed and new jobs run inline. Everything still works, a little slower.'
          : 'The job database is unavailable.';
      } else {
        banner.hidden = true;
      }
    } catch (_) {
      el.className = 'health down';
      el.textContent = 'server unreachable';
    }
  }

  // ---------------------------------------------------------------- tools

  async function toolsPage() {
    show(h('h1', {}, 'Tools'), h('p', { class: 'muted' }, 'Loading the catalogue…'));
    let tools;
    try {
      tools = (await api('/api/tools')).tools;
    } catch (e) {
      return show(h('h1', {}, 'Tools'), errorBox(e));
    }
    const categories = [...new Set(tools.map((t) => t.category))].sort();
    const search = h('input', { type: 'search', id: 'tool-search', placeholder: 'name or description' });
    const cat = h('select', { id: 'tool-category' }, h('option', { value: '' }, 'all'),
      categories.map((c) => h('option', { value: c }, c)));
    const grid = h('div', { class: 'grid', id: 'tool-list', role: 'list' });
    function render() {
      const q = search.value.trim().toLowerCase();
      const shown = tools.filter((t) => (!cat.value || t.category === cat.value) &&
        (!q || `${t.name} ${t.title} ${t.description}`.toLowerCase().includes(q)));
      grid.replaceChildren(...shown.map((t) => h('article', { class: 'card', role: 'listitem', 'data-tool': t.name },
        h('h2', {}, h('a', { href: `#/tools/${encodeURIComponent(t.name)}` }, t.title)),
        h('span', { class: 'tag' }, t.category), ' ', h('code', {}, t.name),
        h('p', {}, t.description))));
      if (!shown.length) grid.append(h('p', { class: 'muted' }, 'No tool matches.'));
    }
    search.addEventListener('input', render);
    cat.addEventListener('change', render);
    show(h('h1', {}, 'Tools'),
      h('div', { class: 'controls' },
        h('label', { for: 'tool-search' }, 'Search', search),
        h('label', { for: 'tool-category' }, 'Category', cat)),
      grid);
    render();
  }

  /** One form control per top-level schema property. */
  function fieldFor(name, prop, required, value) {
    const id = `param-${name}`;
    const type = Array.isArray(prop.type) ? prop.type[0] : prop.type;
    let input;
    let read;
    if (prop.enum) {
      input = h('select', { id, name }, prop.enum.map((v) => h('option', { value: v }, v === '\t' ? 'tab' : v)));
      if (value !== undefined) input.value = value;
      read = () => input.value;
    } else if (type === 'boolean') {
      input = h('input', { id, name, type: 'checkbox' });
      input.checked = value === undefined ? Boolean(prop.default) : Boolean(value);
      read = () => input.checked;
    } else if (type === 'integer' || type === 'number') {
      input = h('input', { id, name, type: 'number', step: type === 'integer' ? '1' : 'any', min: prop.minimum, max: prop.maximum });
      if (value !== undefined) input.value = value;
      read = () => (input.value === '' ? undefined : Number(input.value));
    } else if (type === 'string' && (prop.maxLength || 0) <= 200) {
      input = h('input', { id, name, type: 'text', maxlength: prop.maxLength });
      if (value !== undefined) input.value = value;
      read = () => (input.value === '' ? undefined : input.value);
    } else if (type === 'string') {
      input = h('textarea', { id, name, rows: 8 });
      if (value !== undefined) input.value = value;
      read = () => (input.value === '' ? undefined : input.value);
    } else {
      // Arrays, objects and untyped values are edited as JSON.
      input = h('textarea', { id, name, rows: 8, 'data-json': 'true' });
      if (value !== undefined) input.value = JSON.stringify(value, null, 2);
      read = () => {
        if (input.value.trim() === '') return undefined;
        try { return JSON.parse(input.value); } catch (e) { throw new Error(`${name}: not valid JSON (${e.message})`); }
      };
    }
    const err = h('p', { class: 'err', id: `${id}-error`, 'aria-live': 'polite' });
    input.setAttribute('aria-describedby', `${id}-error ${id}-hint`);
    const wrap = h('div', { class: 'field', 'data-field': name },
      h('label', { for: id }, name, required ? ' (required)' : ''),
      h('p', { class: 'hint', id: `${id}-hint` }, prop.description || (type ? `${type}` : 'any JSON value')),
      input, err);
    return { wrap, read, err, name };
  }

  async function toolPage(name) {
    show(h('h1', {}, name), h('p', { class: 'muted' }, 'Loading…'));
    let tool;
    try {
      tool = await api(`/api/tools/${encodeURIComponent(name)}`);
    } catch (e) {
      return show(h('h1', {}, name), errorBox(e), h('p', {}, h('a', { href: '#/' }, 'Back to the tools')));
    }
    const schema = tool.params || {};
    const props = schema.properties || {};
    const required = new Set(schema.required || []);
    const example = (tool.examples && tool.examples[0] && tool.examples[0].params) || {};
    const fields = Object.entries(props).map(([k, p]) => fieldFor(k, p, required.has(k), example[k]));
    const raw = h('textarea', { id: 'raw-params', rows: 16, 'aria-describedby': 'raw-hint' });
    raw.value = JSON.stringify(example, null, 2);
    const rawMode = h('input', { type: 'checkbox', id: 'raw-mode' });
    const formFields = h('div', { id: 'form-fields' }, fields.map((f) => f.wrap));
    const rawBox = h('div', { class: 'field', hidden: true },
      h('label', { for: 'raw-params' }, 'Parameters as JSON'),
      h('p', { class: 'hint', id: 'raw-hint' }, 'Sent as the "params" object.'), raw);
    rawMode.addEventListener('change', () => {
      if (rawMode.checked) {
        try { raw.value = JSON.stringify(collect(), null, 2); } catch (_) { /* keep the last raw text */ }
      }
      formFields.hidden = rawMode.checked;
      rawBox.hidden = !rawMode.checked;
    });
    const formError = h('div', { id: 'form-error', 'aria-live': 'polite' });
    const runButton = h('button', { type: 'submit', id: 'run' }, 'Run');

    function collect() {
      if (rawMode.checked) return JSON.parse(raw.value || '{}');
      const params = {};
      for (const f of fields) {
        const v = f.read();
        if (v !== undefined) params[f.name] = v;
      }
      return params;
    }

    const form = h('form', { id: 'run-form', novalidate: true },
      h('div', { class: 'field' }, h('label', { for: 'raw-mode' }, rawMode, ' Edit the parameters as raw JSON')),
      formFields, rawBox, formError, runButton);
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      fields.forEach((f) => { f.err.textContent = ''; });
      formError.replaceChildren();
      let params;
      try { params = collect(); } catch (e) { formError.append(errorBox(e)); return; }
      runButton.disabled = true;
      try {
        const accepted = await post('/api/run', { tool: tool.name, params });
        location.hash = `#/jobs/${accepted.job_id}`;
      } catch (e) {
        const details = (e.body && e.body.error && e.body.error.details) || [];
        const unplaced = [];
        for (const d of details) {
          const top = (d.path || '').split('/')[1];
          const f = fields.find((x) => x.name === top);
          if (f && !rawMode.checked) f.err.textContent = `${f.err.textContent ? f.err.textContent + ' ' : ''}${d.message}`;
          else unplaced.push(`${d.path || '(params)'}: ${d.message}`);
        }
        formError.append(errorBox(e));
        if (unplaced.length) formError.append(h('ul', { class: 'form-error' }, unplaced.map((u) => h('li', {}, u))));
      } finally {
        runButton.disabled = false;
      }
    });

    show(
      h('p', {}, h('a', { href: '#/' }, '← Tools')),
      h('h1', {}, tool.title, ' ', h('span', { class: 'tag' }, tool.category)),
      h('p', {}, tool.description),
      h('p', { class: 'muted' }, `Writes ${tool.outputs.map((o) => o.name).join(', ')}; times out after ${tool.timeout_s} s. `,
        tool.examples && tool.examples[0] ? `Pre-filled with the example "${tool.examples[0].title}".` : ''),
      form);
  }

  // ---------------------------------------------------------------- one job

  async function jobPage(id) {
    const state = h('div', { id: 'job-state' });
    const outputs = h('div', { id: 'job-outputs' });
    show(h('p', {}, h('a', { href: '#/jobs' }, '← Jobs')), h('h1', {}, 'Job ', h('code', {}, id)), state, outputs);
    let source = null;
    let shownOutputs = '';

    function progressBar(job) {
      if (job.status !== 'running' && job.status !== 'queued') return '';
      const p = job.progress;
      const pct = p ? Math.round(p.fraction * 100) : null;
      // Indeterminate (no value) until the tool reports how far it is.
      const bar = h('progress', { id: 'job-progress', max: '100', 'aria-label': 'Progress' });
      if (pct !== null) bar.value = pct;
      return h('p', { class: 'progress' }, bar,
        h('span', { class: 'muted', id: 'job-progress-text' }, pct === null ? ` ${job.status}…` : ` ${pct}% — ${p.message}`));
    }

    function actions(job) {
      const live = job.status === 'queued' || job.status === 'running';
      const buttons = [];
      if (live) {
        const cancel = h('button', { type: 'button', id: 'job-cancel', class: 'secondary' },
          job.cancel_requested ? 'Cancelling…' : 'Cancel');
        cancel.disabled = !!job.cancel_requested;
        cancel.addEventListener('click', async () => {
          cancel.disabled = true;
          try { renderJob(await post(`/api/jobs/${encodeURIComponent(id)}/cancel`, {})); }
          catch (e) { cancel.disabled = false; state.append(errorBox(e)); }
        });
        buttons.push(cancel);
      }
      if ((job.status === 'failed' || job.status === 'cancelled') && !job.retried_by) {
        const retry = h('button', { type: 'button', id: 'job-retry' }, 'Retry');
        retry.addEventListener('click', async () => {
          retry.disabled = true;
          try {
            const created = await post(`/api/jobs/${encodeURIComponent(id)}/retry`, {});
            location.hash = `#/jobs/${encodeURIComponent(created.job_id)}`;
          } catch (e) { retry.disabled = false; state.append(errorBox(e)); }
        });
        buttons.push(retry);
      }
      return buttons.length ? h('p', { class: 'actions' }, ...buttons) : '';
    }

    function links(job) {
      const items = [];
      if (job.retry_of) items.push(h('dt', {}, 'Retry of'), h('dd', {}, h('a', { href: `#/jobs/${encodeURIComponent(job.retry_of)}` }, job.retry_of)));
      if (job.retried_by) items.push(h('dt', {}, 'Retried by'), h('dd', {}, h('a', { href: `#/jobs/${encodeURIComponent(job.retried_by)}`, id: 'job-retried-by' }, job.retried_by)));
      return items;
    }

    function renderJob(job) {
      state.replaceChildren(
        h('p', {}, 'Status: ', statusBadge(job.status), job.status === 'queued' || job.status === 'running' ? h('span', { class: 'muted' }, ' (updating live)') : ''),
        progressBar(job),
        actions(job),
        h('dl', { class: 'meta' },
          h('dt', {}, 'Tool'), h('dd', {}, h('a', { href: `#/tools/${encodeURIComponent(job.tool)}` }, job.tool)),
          h('dt', {}, 'Created'), h('dd', {}, fmtTime(job.created_at)),
          h('dt', {}, 'Started'), h('dd', {}, fmtTime(job.started_at)),
          h('dt', {}, 'Finished'), h('dd', {}, fmtTime(job.finished_at)),
          h('dt', {}, 'Duration'), h('dd', {}, job.duration_ms === undefined ? '—' : `${job.duration_ms} ms`),
          h('dt', {}, 'Run by'), h('dd', {}, `${job.dispatch}, attempt ${job.attempts}`),
          ...links(job)),
        job.error ? h('p', { class: 'form-error', role: 'alert', id: 'job-error' }, `Error: ${job.error}`) : '');
      const key = (job.output_files || []).map((o) => o.name).join(',');
      if (key === shownOutputs) return;
      shownOutputs = key;
      const files = job.output_files || [];
      outputs.replaceChildren(
        files.length ? h('h2', {}, 'Outputs') : '',
        files.length ? h('ul', { id: 'output-list' }, files.map((o) =>
          h('li', {}, h('a', { href: o.url, target: '_blank', rel: 'noopener' }, o.name), ` (${o.content_type}, ${o.size} bytes)`))) : '',
        ...files.filter((o) => o.content_type.startsWith('text/html')).map((o) =>
          h('section', {}, h('h2', {}, `Preview: ${o.name}`),
            h('iframe', { class: 'preview', src: o.url, title: `Preview of ${o.name}`, sandbox: 'allow-scripts', 'data-output': o.name }))));
    }

    async function refresh() {
      try {
        const job = await api(`/api/jobs/${encodeURIComponent(id)}`);
        renderJob(job);
        return job;
      } catch (e) {
        state.replaceChildren(errorBox(e));
        return null;
      }
    }

    const job = await refresh();
    if (job && (job.status === 'queued' || job.status === 'running') && apiKey()) {
      // EventSource cannot send an Authorization header: with a key, poll instead.
      const timer = setInterval(async () => {
        const j = await refresh();
        if (!j || ['completed', 'failed', 'cancelled'].includes(j.status)) clearInterval(timer);
      }, 1000);
      stopPage = () => clearInterval(timer);
      return;
    }
    if (job && (job.status === 'queued' || job.status === 'running')) {
      source = new EventSource(`/api/jobs/${encodeURIComponent(id)}/events`);
      source.onmessage = refresh;
      for (const kind of ['job_created', 'job_started', 'job_progress', 'job_completed', 'job_failed', 'job_cancelled']) {
        source.addEventListener(kind, async () => {
          const j = await refresh();
          if (j && ['completed', 'failed', 'cancelled'].includes(j.status)) source.close();
        });
      }
      source.onerror = () => { refresh(); };
    }
    stopPage = () => { if (source) source.close(); };
  }

  // ---------------------------------------------------------------- jobs list

  async function jobsPage(query) {
    const status = h('select', { id: 'filter-status' }, h('option', { value: '' }, 'any'),
      ['queued', 'running', 'completed', 'failed', 'cancelled'].map((s) => h('option', { value: s }, s)));
    const tool = h('input', { type: 'text', id: 'filter-tool', placeholder: 'e.g. build_graph' });
    const auto = h('input', { type: 'checkbox', id: 'auto-refresh', checked: true });
    const body = h('tbody');
    const pager = h('div', { class: 'controls' });
    const error = h('div', { 'aria-live': 'polite' });
    status.value = query.get('status') || '';
    tool.value = query.get('tool') || '';
    const cursors = [];
    let cursor = null;
    let next = null;

    async function load() {
      const p = new URLSearchParams({ limit: '20' });
      if (status.value) p.set('status', status.value);
      if (tool.value.trim()) p.set('tool', tool.value.trim());
      if (cursor) p.set('cursor', cursor);
      try {
        const page = await api(`/api/jobs?${p}`);
        error.replaceChildren();
        next = page.next_cursor;
        body.replaceChildren(...page.jobs.map((j) => h('tr', {},
          h('td', {}, h('a', { href: `#/jobs/${j.job_id}` }, j.job_id.slice(0, 8) + '…')),
          h('td', {}, j.tool), h('td', {}, statusBadge(j.status)),
          h('td', {}, fmtTime(j.created_at)), h('td', {}, j.duration_ms === undefined ? '—' : `${j.duration_ms} ms`))));
        if (!page.jobs.length) body.append(h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'No jobs match.')));
        pager.replaceChildren(
          h('button', { type: 'button', class: 'secondary', disabled: !cursors.length, onclick: () => { cursor = cursors.pop() || null; load(); } }, 'Newer'),
          h('button', { type: 'button', class: 'secondary', disabled: !next, onclick: () => { cursors.push(cursor); cursor = next; load(); } }, 'Older'));
      } catch (e) {
        error.replaceChildren(errorBox(e));
      }
    }
    function restart() { cursors.length = 0; cursor = null; load(); }
    status.addEventListener('change', restart);
    tool.addEventListener('change', restart);
    const timer = setInterval(() => { if (auto.checked && !cursor) load(); }, 5000);
    stopPage = () => clearInterval(timer);
    show(h('h1', {}, 'Jobs'),
      h('div', { class: 'controls' },
        h('label', { for: 'filter-status' }, 'Status', status),
        h('label', { for: 'filter-tool' }, 'Tool', tool),
        h('label', { for: 'auto-refresh' }, 'Auto-refresh', auto)),
      error,
      h('table', {}, h('caption', { class: 'muted' }, 'Newest first'),
        h('thead', {}, h('tr', {}, ['Job', 'Tool', 'Status', 'Created', 'Duration'].map((c) => h('th', { scope: 'col' }, c)))), body),
      pager);
    load();
  }

  // ---------------------------------------------------------------- stats

  /** A horizontal bar chart drawn as SVG. */
  function barChart(title, entries) {
    const ns = 'http://www.w3.org/2000/svg';
    const max = Math.max(1, ...entries.map(([, v]) => v));
    const rowH = 26, labelW = 110, width = 420;
    const svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('viewBox', `0 0 ${width} ${entries.length * rowH + 8}`);
    svg.setAttribute('class', 'chart');
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', `${title}: ${entries.map(([k, v]) => `${k} ${v}`).join(', ')}`);
    const colors = { completed: '#1f7a3a', failed: '#b3261e', running: '#c48a00', queued: '#5b6475', cancelled: '#8a4fbf' };
    entries.forEach(([k, v], i) => {
      const y = i * rowH + 4;
      const label = document.createElementNS(ns, 'text');
      label.setAttribute('x', '0'); label.setAttribute('y', String(y + 16)); label.textContent = k;
      const bar = document.createElementNS(ns, 'rect');
      const w = Math.round((width - labelW - 50) * v / max);
      bar.setAttribute('x', String(labelW)); bar.setAttribute('y', String(y + 3));
      bar.setAttribute('width', String(Math.max(w, 1))); bar.setAttribute('height', '16');
      bar.setAttribute('fill', colors[k] || '#2456a6');
      const num = document.createElementNS(ns, 'text');
      num.setAttribute('x', String(labelW + w + 6)); num.setAttribute('y', String(y + 16)); num.textContent = String(v);
      svg.append(label, bar, num);
    });
    return h('figure', {}, h('figcaption', {}, title), svg);
  }

  async function statsPage() {
    show(h('h1', {}, 'Stats'), h('p', { class: 'muted' }, 'Loading…'));
    let s;
    try {
      s = await api('/api/stats');
    } catch (e) {
      return show(h('h1', {}, 'Stats'), errorBox(e));
    }
    const ratio = (c) => (c.hit_ratio === null ? 'no reads yet' : `${Math.round(c.hit_ratio * 100)}% (${c.hits} hits, ${c.misses} misses)`);
    const r = s.redis;
    show(h('h1', {}, 'Stats'),
      h('div', { class: 'row' },
        h('section', { class: 'card' }, h('h2', {}, `Jobs (${s.jobs.total})`),
          barChart('Jobs by status', Object.entries(s.jobs.by_status))),
        h('section', { class: 'card' }, h('h2', {}, 'Jobs by tool'),
          barChart('Jobs by tool', Object.entries(s.jobs.by_tool).map(([k, v]) => [k, v.total || 0])))),
      h('div', { class: 'row' },
        h('section', { class: 'card' }, h('h2', {}, 'Durations of completed jobs'),
          h('dl', { class: 'meta' },
            h('dt', {}, 'count'), h('dd', {}, s.durations_ms.count),
            h('dt', {}, 'mean'), h('dd', {}, s.durations_ms.mean === null ? '—' : `${s.durations_ms.mean} ms`),
            h('dt', {}, 'p50'), h('dd', {}, s.durations_ms.p50 === null ? '—' : `${s.durations_ms.p50} ms`),
            h('dt', {}, 'p95'), h('dd', {}, s.durations_ms.p95 === null ? '—' : `${s.durations_ms.p95} ms`))),
        h('section', { class: 'card' }, h('h2', {}, 'Cache and limits'),
          h('dl', { class: 'meta' },
            h('dt', {}, 'registry cache'), h('dd', {}, ratio(s.cache.tool_registry)),
            h('dt', {}, 'job status cache'), h('dd', {}, ratio(s.cache.job_status)),
            h('dt', {}, 'rate-limited requests'), h('dd', {}, s.rate_limit.rejections))),
        h('section', { class: 'card', id: 'redis-state' }, h('h2', {}, 'Redis'),
          r.available
            ? h('dl', { class: 'meta' },
              h('dt', {}, 'version'), h('dd', {}, r.version),
              h('dt', {}, 'memory'), h('dd', {}, r.used_memory_human),
              h('dt', {}, 'clients'), h('dd', {}, r.connected_clients),
              h('dt', {}, 'uptime'), h('dd', {}, `${r.uptime_s} s`),
              h('dt', {}, 'keys'), h('dd', {}, r.keys))
            : h('p', { class: 'form-error' }, 'Redis is unavailable: figures above come from SQLite alone.'))));
  }

  // ---------------------------------------------------------------- keys

  /** API keys (closed mode, admin keys): make one (its secret shown once), list, revoke. */
  async function keysPage() {
    const name = h('input', { type: 'text', id: 'key-name', required: true, maxlength: 64 });
    const scopes = ['read', 'run', 'admin'].map((s) =>
      h('label', { class: 'inline' }, h('input', { type: 'checkbox', name: 'scope', value: s, checked: s === 'read' }), ` ${s}`));
    const limit = h('input', { type: 'number', id: 'key-limit', min: 1 });
    const made = h('div', { id: 'key-made', 'aria-live': 'polite' });
    const list = h('tbody');
    const error = h('div', { 'aria-live': 'polite' });

    async function load() {
      try {
        const body = await api('/api/keys');
        error.replaceChildren();
        list.replaceChildren(...body.keys.map((k) => h('tr', { 'data-key': k.id },
          h('td', {}, k.name), h('td', {}, h('code', {}, k.id.slice(0, 8) + '…')), h('td', {}, k.scopes.join(', ')),
          h('td', {}, k.rate_limit_max === null ? 'default' : String(k.rate_limit_max)),
          h('td', {}, k.revoked_at ? `revoked ${fmtTime(k.revoked_at)}` : h('button', {
            type: 'button', class: 'secondary', 'aria-label': `Revoke ${k.name}`,
            onclick: async () => {
              try { await api(`/api/keys/${encodeURIComponent(k.id)}`, { method: 'DELETE' }); } catch (e) { error.replaceChildren(errorBox(e)); }
              load();
            },
          }, 'Revoke')))));
        if (!body.keys.length) list.append(h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'No keys yet.')));
      } catch (e) {
        error.replaceChildren(errorBox(e));
      }
    }

    const form = h('form', {
      id: 'key-form',
      onsubmit: async (ev) => {
        ev.preventDefault();
        const payload = {
          name: name.value,
          scopes: [...form.querySelectorAll('input[name=scope]:checked')].map((c) => c.value),
        };
        if (limit.value) payload.rate_limit_max = Number(limit.value);
        try {
          const k = await post('/api/keys', payload);
          made.replaceChildren(h('p', {}, `Key "${k.name}" made. Copy it now: it is shown this once.`),
            h('code', { id: 'key-secret', class: 'secret' }, k.key));
          form.reset();
          load();
        } catch (e) {
          made.replaceChildren(errorBox(e));
        }
      },
    },
    h('label', { for: 'key-name' }, 'Name'), name,
    h('fieldset', {}, h('legend', {}, 'Scopes'), scopes),
    h('label', { for: 'key-limit' }, 'Requests per window (empty: the default)'), limit,
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Make key')));

    show(h('h1', {}, 'API keys'),
      h('p', { class: 'muted' }, 'Closed mode only (api_token set); an admin key manages the keys.'),
      h('section', { class: 'card' }, h('h2', {}, 'New key'), form, made),
      h('section', { class: 'card' }, h('h2', {}, 'Keys'), error,
        h('table', {}, h('thead', {}, h('tr', {}, ['Name', 'Id', 'Scopes', 'Limit', ''].map((c) => h('th', {}, c)))), list)));
    load();
  }

  // ---------------------------------------------------------------- routing

  async function route() {
    stopPage();
    stopPage = () => {};
    const [path, qs] = (location.hash.slice(1) || '/').split('?');
    const query = new URLSearchParams(qs || '');
    const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
    const section = parts[0] || 'tools';
    for (const a of document.querySelectorAll('[data-nav]')) {
      if (a.dataset.nav === section) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    if (parts[0] === 'tools' && parts[1]) await toolPage(parts[1]);
    else if (parts[0] === 'jobs' && parts[1]) await jobPage(parts[1]);
    else if (parts[0] === 'jobs') await jobsPage(query);
    else if (parts[0] === 'stats') await statsPage();
    else if (parts[0] === 'keys') await keysPage();
    else await toolsPage();
    main.focus({ preventScroll: true });
  }

  window.addEventListener('hashchange', route);
  refreshHealth();
  setInterval(refreshHealth, 10000);
  route();
})();
