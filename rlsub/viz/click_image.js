const KEYS = ['ArrowLeft', 'ArrowRight', 'ArrowUp', 'ArrowDown', 'Home', 'End'];   // rlsub.viz.figures.STEP_KEYS
function render({ model, el }) {
  const box = document.createElement('div'), img = document.createElement('img'), cue = document.createElement('div');
  box.className = 'rlsub-img'; cue.className = 'rlsub-cue';
  let url = '';
  const show = () => {
    const v = model.get('value');
    if (url) URL.revokeObjectURL(url);
    url = v && v.byteLength ? URL.createObjectURL(new Blob([v], { type: 'image/png' })) : '';
    if (url) img.src = url; else img.removeAttribute('src');
    box.classList.toggle('rlsub-empty', !url);            // no picture: nothing shown (no broken-image icon)
  };
  const cursor = () => {                                   // clickable: a hand cursor, and a stop for Tab so the keys reach it
    const on = model.get('pointer');
    img.style.cursor = on ? 'pointer' : 'default';
    if (on) box.tabIndex = 0; else box.removeAttribute('tabindex');
  };
  const busy = () => {                                     // busy: what the kernel is doing for this picture ('' when nothing)
    const b = model.get('busy');
    box.classList.toggle('rlsub-busy', !!b);
    if (b) cue.textContent = b;
  };
  img.addEventListener('click', (e) => {
    if (!model.get('pointer')) return;
    const r = img.getBoundingClientRect();
    model.send({ x: (e.clientX - r.left) / r.width, y: (e.clientY - r.top) / r.height });
  });
  box.addEventListener('keydown', (e) => {                 // arrows move the chosen group or cell, Home and End to the ends of its row
    if (!model.get('pointer') || !KEYS.includes(e.key) || e.altKey || e.ctrlKey || e.metaKey) return;
    e.preventDefault(); e.stopPropagation();               // JupyterLab's notebook must not take the arrows as cell navigation
    model.send({ key: e.key });
  });
  model.on('change:value', show); model.on('change:pointer', cursor); model.on('change:busy', busy);
  show(); cursor(); busy(); box.append(img, cue); el.appendChild(box);
  return () => { if (url) URL.revokeObjectURL(url); };
}
export default { render };
