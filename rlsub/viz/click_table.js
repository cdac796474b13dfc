function render({ model, el }) {
  const box = document.createElement('div');
  box.className = 'rlsub-rows';
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
  model.on('change:value', show); model.on('change:selected', mark);
  show(); el.appendChild(box);
}
export default { render };
