"""Explorer responsiveness: milliseconds per control change on a report with the layout of a 7B model.

Builds the report with `rlsub.measure.report.synthetic_report` (the layout of a 7B config, Llama-2 (291 tensors)
or Qwen2.5 (339 tensors: q/k/v carry biases), from
`rlsub.examples.checkpoint_layout` on the meta device, random histograms; no weights), opens an
`Explorer` without displaying it, then changes each control many times, as a click would (setting
`.value` runs the observers synchronously), and times each change including the redraw of every
figure it touches and its PNG encoding. Clicks are timed from the message the browser sends (a point on the
heatmap, a row's name) to the last redraw they cause. Prints median and max wall-clock ms per control, and the median CPU ms of
the process (close to what an idle core takes when the machine is shared); the budget is 50 ms.
Usage: python benchmarks/bench_explorer.py [--family llama|qwen2] [--repeat N]
"""
import argparse, itertools, time
import numpy as np

def timed(fn, values, repeat):
    "Median and max wall-clock ms per change, and median CPU ms of this process (what an idle core would take; robust to load)."
    ts, cs = [], []
    for v in itertools.islice(itertools.cycle(values), repeat):
        s, c = time.perf_counter(), time.process_time(); fn(v)
        ts.append((time.perf_counter() - s) * 1e3); cs.append((time.process_time() - c) * 1e3)
    return np.median(ts), max(ts), np.median(cs)

def main():
    ap = argparse.ArgumentParser(); ap.add_argument('--repeat', type=int, default=60); ap.add_argument('--family', default='qwen2', choices=['llama', 'qwen2'])
    args = ap.parse_args()
    import matplotlib; matplotlib.use('Agg')
    from transformers import LlamaConfig, Qwen2Config
    from rlsub.viz.explorer import Explorer
    from rlsub.measure.report import synthetic_report
    from rlsub.measure.rules import LADDER
    if args.family == 'llama':   # Llama-2-7B
        cfg = LlamaConfig(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32, num_key_value_heads=32,
                          vocab_size=32000, tie_word_embeddings=False)
    else:                        # Qwen2.5-7B
        cfg = Qwen2Config(hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
                          vocab_size=152064, tie_word_embeddings=False)
    s = time.perf_counter(); report = synthetic_report(cfg, seed=0); t_build = time.perf_counter() - s
    s = time.perf_counter(); ex = Explorer(report); t_open = time.perf_counter() - s
    print(f"report: {len(report.table)} tensors, {report.numel:,} parameters (built in {t_build:.2f} s); Explorer opened in {t_open * 1e3:.0f} ms")
    steps = [float(v) for v in LADDER[20:90:3]]
    names = list(report.table.name[::7])
    def setv(w): return lambda v: setattr(w, 'value', v)
    for view in ('layer', 'kind', 'heatmap', 'tensors'): ex.view.value = view       # draw every figure once: later changes update it
    ex.tensor.value = report.table.name[0]; ex.tensor.value = ""
    results = []
    for view in ('layer', 'kind', 'heatmap', 'tensors'):
        ex.view.value, ex.rule.value = view, 'abs'
        results.append((f'threshold (view {view})', *timed(setv(ex.threshold), steps, args.repeat)))
        results.append((f'rule (view {view})', *timed(setv(ex.rule), ['exact', 'abs', 'rel'], args.repeat)))
    ex.view.value = 'tensors'
    results.append(('sort (view tensors)', *timed(setv(ex.sort), ['size', 'sparsity', 'model order'], args.repeat)))
    ex.rule.value = 'abs'
    results.append(('view', *timed(setv(ex.view), ['layer', 'kind', 'heatmap', 'tensors'], args.repeat)))
    ex.view.value = 'heatmap'
    results.append(('tensor (histogram)', *timed(setv(ex.tensor), names, args.repeat)))
    results.append(('threshold, tensor chosen (view heatmap)', *timed(setv(ex.threshold), steps, args.repeat)))
    results.append(('rule, tensor chosen (view heatmap)', *timed(setv(ex.rule), ['exact', 'abs', 'rel'], args.repeat)))
    pts = [ex.point(layer=l, kind=k) for l, k in list(zip(report.table.layer, report.table.kind))[::7]]   # where those cells are drawn
    results.append(('click a heatmap cell (cut table, choose)', *timed(lambda p: ex._on_figure_click(*p), pts, args.repeat)))
    results.append(('click a table row', *timed(ex._on_row, names, args.repeat)))
    w = max(len(r[0]) for r in results)
    print(f"{'control':{w}}  median ms  max ms  median CPU ms   ({args.repeat} changes each)")
    for name, med, mx, cpu in results: print(f"{name:{w}}  {med:9.1f}  {mx:6.1f}  {cpu:13.1f}")
    worst = max(r[2] for r in results)
    print(f"worst max {worst:.1f} ms; worst median {max(r[1] for r in results):.1f} ms; worst median CPU {max(r[3] for r in results):.1f} ms (budget 50 ms per change)")

if __name__ == '__main__': main()
