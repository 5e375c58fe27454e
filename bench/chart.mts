import * as vega from 'vega';
import { compile, type TopLevelSpec } from 'vega-lite';

// Charts for bench/results: a Vega-Lite spec rendered to SVG headless (no canvas, no browser).
export async function toSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  return view.toSVG();
}
