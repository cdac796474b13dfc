function render({ model, el }) {
  const box = document.createElement('div');
  box.className = 'rlsub-rows';
  box.tabIndex = 0;                                        // a stop for Tab: the arrow keys then walk the rows
  const mark = () => {
    const s = model.get('selected');
    for (const tr of box.querySelectorAll('tr[data-name]')) {
      const on = tr.dataset.name === s;
      tr.classList.toggle('rlsub-sel', on);
      const pane = tr.closest('div');                      // the table scrolls in its own pane: bring the chosen row into it,
      if (on && pane && pane !== box && pane.scrollHeight > pane.clientHeight) {   // without scrolling the notebook
        const head = tr.closest('table').tHead, p = pane.getBoundingClientRect(), r = tr.getBoundingClientRect();
        const top = p.top + (head ? head.offsetHeight : 0);
        if (r.top < top || r.bottom > p.bottom) pane.scrollTop += r.top - top;
      }
    }
  };
  const show = () => { box.innerHTML = model.get('value'); mark(); };
  box.addEventListener('click', (e) => {
    const tr = e.target.closest('tr[data-name]');
    if (tr) model.send({ name: tr.dataset.name });
  });
  box.addEventListener('keydown', (e) => {                 // ↑ ↓ the next row, Home and End the first and last; from none chosen, the first
    const step = { ArrowUp: -1, ArrowDown: 1, Home: -Infinity, End: Infinity }[e.key];
    if (step === undefined || e.altKey || e.ctrlKey || e.metaKey) return;
    const rows = [...box.querySelectorAll('tr[data-name]')];
    if (!rows.length) return;
    e.preventDefault(); e.stopPropagation();               // JupyterLab's notebook must not take the arrows as cell navigation
    const i = rows.findIndex((tr) => tr.dataset.name === model.get('selected'));
    const j = i < 0 ? 0 : Math.min(Math.max(i + (Number.isFinite(step) ? step : step > 0 ? rows.length : -rows.length), 0), rows.length - 1);
    if (j !== i) model.send({ name: rows[j].dataset.name });
  });
  model.on('change:value', show); model.on('change:selected', mark);
  show(); el.appendChild(box);
}
export default { render };
