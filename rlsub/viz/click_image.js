const KEYS = ['ArrowLeft', 'ArrowRight', 'ArrowUp', 'ArrowDown', 'Home', 'End'];   // rlsub.viz.figures.STEP_KEYS
function render({ model, el }) {
  const box = document.createElement('div'), img = document.createElement('img'), cue = document.createElement('div');
  const tip = document.createElement('div');
  box.className = 'rlsub-img'; cue.className = 'rlsub-cue'; tip.className = 'rlsub-tip';
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
  let last = 0, pending = null, at = null;                // the pointer's position goes to the kernel at most every 60 ms
  const hover = () => { pending = null; last = performance.now(); model.send({ hover: at ? [at.x, at.y] : [] }); };
  img.addEventListener('mousemove', (e) => {
    if (!model.get('pointer')) return;
    const r = img.getBoundingClientRect();
    at = { x: (e.clientX - r.left) / r.width, y: (e.clientY - r.top) / r.height, px: e.clientX - r.left, py: e.clientY - r.top };
    if (!pending) pending = setTimeout(hover, Math.max(0, 60 - (performance.now() - last)));
  });
  img.addEventListener('mouseleave', () => { at = null; if (pending) clearTimeout(pending); hover(); });
  const showTip = () => {                                  // the kernel's answer for the last position, beside the pointer
    const t = model.get('tip');
    tip.textContent = t; tip.style.display = t && at ? 'block' : 'none';
    if (t && at) {
      const right = at.px > box.clientWidth * 0.6;         // near the right edge: to the pointer's left
      tip.style.left = right ? '' : `${at.px + 14}px`; tip.style.right = right ? `${box.clientWidth - at.px + 14}px` : '';
      tip.style.top = `${at.py + 14}px`;
    }
  };
  box.addEventListener('keydown', (e) => {                 // arrows move the chosen group or cell, Home and End to the ends of its row
    if (!model.get('pointer') || !KEYS.includes(e.key) || e.altKey || e.ctrlKey || e.metaKey) return;
    e.preventDefault(); e.stopPropagation();               // JupyterLab's notebook must not take the arrows as cell navigation
    model.send({ key: e.key });
  });
  model.on('change:value', show); model.on('change:pointer', cursor); model.on('change:busy', busy); model.on('change:tip', showTip);
  show(); cursor(); busy(); showTip(); box.append(img, cue, tip); el.appendChild(box);
  return () => { if (url) URL.revokeObjectURL(url); if (pending) clearTimeout(pending); };
}
export default { render };
