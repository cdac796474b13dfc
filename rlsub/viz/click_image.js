function render({ model, el }) {
  const img = document.createElement('img');
  img.style.cssText = 'width:100%;height:auto;display:block';
  let url = '';
  const show = () => {
    const v = model.get('value');
    if (url) URL.revokeObjectURL(url);
    url = v && v.byteLength ? URL.createObjectURL(new Blob([v], { type: 'image/png' })) : '';
    if (url) img.src = url; else img.removeAttribute('src');
  };
  const cursor = () => { img.style.cursor = model.get('pointer') ? 'pointer' : 'default'; };
  img.addEventListener('click', (e) => {
    const r = img.getBoundingClientRect();
    model.send({ x: (e.clientX - r.left) / r.width, y: (e.clientY - r.top) / r.height });
  });
  model.on('change:value', show); model.on('change:pointer', cursor);
  show(); cursor(); el.appendChild(img);
  return () => { if (url) URL.revokeObjectURL(url); };
}
export default { render };
