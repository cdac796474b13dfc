const KEYS = ['ArrowLeft', 'ArrowRight', 'ArrowUp', 'ArrowDown', 'Home', 'End'];   // rlsub.viz.figures.STEP_KEYS
function render({ model, el }) {
  const box = document.createElement('div'), img = document.createElement('img'), cue = document.createElement('div');
  const tip = document.createElement('div'), band = document.createElement('div'), reset = document.createElement('button');
  box.className = 'rlsub-img'; cue.className = 'rlsub-cue'; tip.className = 'rlsub-tip'; band.className = 'rlsub-band';
  reset.className = 'rlsub-reset'; reset.type = 'button'; reset.textContent = 'whole figure';
  reset.title = 'zoomed: show the whole figure again (Escape)';
  img.draggable = false;                                   // a drag zooms; the browser must not start dragging the picture
  let url = '';
  const show = () => {
    const v = model.get('value');
    if (url) URL.revokeObjectURL(url);
    url = v && v.byteLength ? URL.createObjectURL(new Blob([v], { type: 'image/png' })) : '';
    if (url) img.src = url; else img.removeAttribute('src');
    box.classList.toggle('rlsub-empty', !url);            // no picture: nothing shown (no broken-image icon)
  };
  const cursor = () => {                                   // clickable: a hand cursor, and a stop for Tab so the keys reach it
    const on = model.get('pointer'), zoom = model.get('zoomable');
    img.style.cursor = on ? 'pointer' : zoom ? 'crosshair' : 'default';
    if (on || zoom) box.tabIndex = 0; else box.removeAttribute('tabindex');
  };
  const zoomed = () => box.classList.toggle('rlsub-zoomed', !!model.get('zoomed'));
  const busy = () => {                                     // busy: what the kernel is doing for this picture ('' when nothing)
    const b = model.get('busy');
    box.classList.toggle('rlsub-busy', !!b);
    if (b) cue.textContent = b;
  };
  // dragging a box zooms onto it (with Shift held: moves a zoomed view); 'whole figure' or Escape zooms out; a click stays a click
  let drag = null, dragged = false;
  const frac = (e) => { const r = img.getBoundingClientRect(); return { x: (e.clientX - r.left) / r.width, y: (e.clientY - r.top) / r.height, px: e.clientX - r.left, py: e.clientY - r.top }; };
  const moveBand = (e) => {
    if (!drag) return;
    const p = frac(e);
    if (!dragged && Math.hypot(p.px - drag.px, p.py - drag.py) < 5) return;
    dragged = true; tip.style.display = 'none';
    if (drag.pan) return;
    Object.assign(band.style, { display: 'block', left: `${Math.min(p.px, drag.px)}px`, top: `${Math.min(p.py, drag.py)}px`,
                                width: `${Math.abs(p.px - drag.px)}px`, height: `${Math.abs(p.py - drag.py)}px` });
  };
  const endDrag = (e) => {
    window.removeEventListener('mousemove', moveBand); window.removeEventListener('mouseup', endDrag);
    band.style.display = 'none';
    if (drag && dragged) {
      const p = frac(e), c = (v) => Math.min(Math.max(v, 0), 1);
      model.send({ [drag.pan ? 'pan' : 'zoom']: [c(drag.x), c(drag.y), c(p.x), c(p.y)] });
    }
    drag = null;
  };
  img.addEventListener('mousedown', (e) => {
    if (!model.get('zoomable') || e.button !== 0) return;
    e.preventDefault(); box.focus({ preventScroll: true });
    drag = { ...frac(e), pan: e.shiftKey && !!model.get('zoomed') }; dragged = false;
    window.addEventListener('mousemove', moveBand); window.addEventListener('mouseup', endDrag);
  });
  reset.addEventListener('click', (e) => { e.stopPropagation(); model.send({ zoom: [] }); });
  img.addEventListener('click', (e) => {
    if (dragged) { dragged = false; return; }              // the end of a drag, not a click
    if (!model.get('pointer')) return;
    const r = img.getBoundingClientRect();
    model.send({ x: (e.clientX - r.left) / r.width, y: (e.clientY - r.top) / r.height });
  });
  let last = 0, pending = null, at = null;                // the pointer's position goes to the kernel at most every 60 ms
  const hover = () => { pending = null; last = performance.now(); model.send({ hover: at ? [at.x, at.y] : [] }); };
  img.addEventListener('mousemove', (e) => {                // a figure that clicks or zooms answers hovering too
    if (!(model.get('pointer') || model.get('zoomable')) || drag) return;
    const r = img.getBoundingClientRect();
    at = { x: (e.clientX - r.left) / r.width, y: (e.clientY - r.top) / r.height, px: e.clientX - r.left, py: e.clientY - r.top };
    if (!pending) pending = setTimeout(hover, Math.max(0, 60 - (performance.now() - last)));
  });
  img.addEventListener('mouseleave', () => { if (!at) return; at = null; if (pending) clearTimeout(pending); hover(); });
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
    if (e.key === 'Escape' && model.get('zoomed')) { e.preventDefault(); e.stopPropagation(); model.send({ zoom: [] }); return; }
    if (!model.get('pointer') || !KEYS.includes(e.key) || e.altKey || e.ctrlKey || e.metaKey) return;
    e.preventDefault(); e.stopPropagation();               // JupyterLab's notebook must not take the arrows as cell navigation
    model.send({ key: e.key });
  });
  model.on('change:value', show); model.on('change:pointer', cursor); model.on('change:busy', busy); model.on('change:tip', showTip);
  model.on('change:zoomable', cursor); model.on('change:zoomed', zoomed);
  show(); cursor(); busy(); showTip(); zoomed(); box.append(img, cue, tip, band, reset); el.appendChild(box);
  return () => { if (url) URL.revokeObjectURL(url); if (pending) clearTimeout(pending); window.removeEventListener('mousemove', moveBand); window.removeEventListener('mouseup', endDrag); };
}
export default { render };
