"""The report engine's responsiveness in the browser: milliseconds per control change on a report with the layout of a 7B model.

The same engine draws `rlsub scan --html`'s page, `rlsub demo`'s page and the notebook's `page_view` /
`explore(..., engine='browser')`. This script writes the page of a synthetic report with the layout of Qwen2.5-7B
(339 tensors; `rlsub.measure.report.synthetic_report`, random histograms, no weights), opens it from the file in
headless system Chromium (every network request refused), and changes each control many times as a click does
(the slider's input event, a button's or a row's click), timing in the page from the event to the DOM redrawn and
laid out (style and layout forced; painting not included) and, separately, to the next frame's start. Prints median
and max ms per control, the file's size and its first render; the budget is 150 ms from click to picture.
Usage: python benchmarks/bench_page.py [--repeat N] [--family llama|qwen2]
"""
import argparse, statistics, tempfile, time
from pathlib import Path

TIME_JS = """async ([what, sel, n, after]) => {   // after: a control clicked (untimed) after each change, to come back     // n changes of one control; ms to the laid-out DOM, and to the next frame
  const frame = () => new Promise(r => requestAnimationFrame(() => r()));
  const sync = [], framed = [];
  for (let i = 0; i < n; i++) {
    const th = document.getElementById('rl-threshold');
    const t0 = performance.now();
    if (what === 'slider') { th.value = 20 + (i * 7) % 60; th.dispatchEvent(new Event('input', {bubbles: true})); }
    else { const els = [...document.querySelectorAll(sel[i % sel.length] || sel[0])]; (els[i % els.length] || els[0]).dispatchEvent(new MouseEvent('click', {bubbles: true})); }
    document.body.offsetHeight;                 // style and layout, as the browser must before it can paint
    sync.push(performance.now() - t0);
    await frame();
    framed.push(performance.now() - t0);
    if (after) { document.querySelector(after).click(); await frame(); }
  }
  return [sync, framed];
}"""


def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--repeat', type=int, default=40); ap.add_argument('--family', default='qwen2', choices=['llama', 'qwen2'])
    args = ap.parse_args()
    import sys; sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tests'))
    from browser import chromium, missing
    if missing(): raise SystemExit(f"no browser here: {missing()}")
    from transformers import LlamaConfig, Qwen2Config
    from rlsub.measure.report import synthetic_report
    from rlsub.viz.page import save_report
    cfg = (LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32, vocab_size=32000, tie_word_embeddings=False)
           if args.family == 'llama' else
           Qwen2Config(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4, vocab_size=152064, tie_word_embeddings=False))
    report = synthetic_report(cfg, seed=0)
    path = save_report(report, Path(tempfile.mkdtemp()) / 'page.html', 'abs', 1e-5, printable=False)
    print(f"report: {len(report.table)} tensors, {report.numel:,} parameters; page {path.stat().st_size / 1024:.0f} KiB")
    with chromium() as b:
        page = b.new_page(viewport={'width': 1400, 'height': 1000})
        page.route('**/*', lambda r: r.continue_() if r.request.url.startswith('file:') else r.abort())
        t0 = time.perf_counter(); page.goto(path.as_uri()); page.wait_for_selector('body[data-ready="1"]')
        print(f"first render: {(time.perf_counter() - t0) * 1e3:.0f} ms (file:// to the drawn page)")
        rows = []
        def run(label, what, sel=(), before=None, after=None):
            if before: before()
            s, f = page.evaluate(TIME_JS, [what, list(sel), args.repeat, after])
            rows.append((label, statistics.median(s), max(s), statistics.median(f)))
        view = lambda v: (lambda: page.click(f'#rl-views button[data-view="{v}"]'))
        rule = lambda r: (lambda: page.click(f'#rl-rules button[data-rule="{r}"]'))
        for v, name in (('layer', 'by layer'), ('kind', 'by kind'), ('heatmap', 'layer × kind'), ('tensors', 'tensor table')):
            run(f'threshold ({name})', 'slider', before=lambda v=v: (rule('abs')(), view(v)()))
            run(f'rule ({name})', 'click', [f'#rl-rules button[data-rule="{r}"]' for r in ('exact', 'abs', 'rel')])
        run('view', 'click', [f'#rl-views button[data-view="{v}"]' for v in ('layer', 'kind', 'heatmap', 'tensors')], before=rule('abs'))
        run('choosing a tensor (a table row: its histogram)', 'click', ['#rl-tensors tbody tr'], before=view('tensors'))
        run('threshold, a tensor chosen (layer × kind)', 'slider', before=view('heatmap'))
        run('clicking a heatmap cell (the table cut to it)', 'click', ['rect.rl-cell'], after='#rl-views button[data-view="heatmap"]')
        print(f"\n{'control':50s} {'median ms':>10s} {'max ms':>8s} {'to next frame, median ms':>26s}")
        for label, med, mx, fr in rows: print(f"{label:50s} {med:10.1f} {mx:8.1f} {fr:26.1f}")


if __name__ == '__main__':
    main()
