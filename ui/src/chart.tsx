// A small live line chart (uPlot) over the metric points.
import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

const COLORS = ["#2456d6", "#d6562e", "#1f9d6b", "#a23bd6", "#c99a06", "#0aa3b5"];

export function Chart({ title, times, series, unit }: { title: string; times: number[]; series: { label: string; values: (number | null)[] }[]; unit: string }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  const shape = series.map((s) => s.label).join("|");

  useEffect(() => {
    if (!box.current) return;
    const opts: uPlot.Options = {
      width: Math.max(240, box.current.clientWidth),
      height: 180,
      legend: { show: true },
      scales: { x: { time: true } },
      axes: [
        { stroke: "currentColor", grid: { stroke: "rgba(128,128,128,0.15)" } },
        { stroke: "currentColor", grid: { stroke: "rgba(128,128,128,0.15)" }, size: 56, values: (_u, vals) => vals.map((v) => `${+v.toPrecision(3)}${unit}`) },
      ],
      series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: true }))],
    };
    plot.current = new uPlot(opts, [times, ...series.map((s) => s.values)] as uPlot.AlignedData, box.current);
    const resize = new ResizeObserver(() => {
      if (box.current && plot.current) plot.current.setSize({ width: Math.max(240, box.current.clientWidth), height: 180 });
    });
    resize.observe(box.current);
    return () => {
      resize.disconnect();
      plot.current?.destroy();
      plot.current = null;
    };
  }, [shape, unit]);

  useEffect(() => {
    plot.current?.setData([times, ...series.map((s) => s.values)] as uPlot.AlignedData);
  });

  // The latest value of each series, beside the title (also what a screen reader gets).
  const now = series
    .map((s) => {
      const v = [...s.values].reverse().find((x) => x !== null && x !== undefined);
      return v === undefined || v === null ? null : `${series.length > 1 ? s.label + " " : ""}${+v.toPrecision(3)}${unit}`;
    })
    .filter(Boolean)
    .join(", ");
  return (
    <figure class="chart">
      <figcaption>
        {title} <span class="now">{now || "–"}</span>
      </figcaption>
      <div ref={box} role="img" aria-label={`${title} chart`} />
    </figure>
  );
}
