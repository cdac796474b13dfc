function render({ model, el }) {
  const box = document.createElement('div');
  box.className = 'rlsub-rows';
  const mark = () => {
    const s = model.get('selected');
    for (const tr of box.querySelectorAll('tr[data-name]')) tr.classList.toggle('rlsub-sel', tr.dataset.name === s);
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
