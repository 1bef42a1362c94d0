// One ECharts chart in a container that names it (role="img" and aria-label: the figures
// themselves are in the table beside it). Disposed when it leaves the page; follows the
// container's size.
import { useEffect, useRef } from "preact/hooks";

import { mountChart } from "../charts.js";
import type { ChartOption } from "../charts.js";

export function Chart({ option, testId, label, height }: {
  option: ChartOption;
  testId: string;
  label: string;
  /** In pixels, for a chart that grows with its rows; else the stylesheet's. */
  height?: number | undefined;
}) {
  const element = useRef<HTMLDivElement>(null);
  const chart = useRef<ReturnType<typeof mountChart> | null>(null);
  useEffect(() => {
    if (element.current === null) {
      return undefined;
    }
    const mounted = mountChart(element.current);
    chart.current = mounted;
    return () => {
      chart.current = null;
      mounted.dispose();
    };
  }, []);
  useEffect(() => {
    chart.current?.show(option);
  }, [option]);
  return (
    <div ref={element} class="chart" role="img"
      style={height === undefined ? undefined : { height: `${height}px` }}
      aria-label={label} data-testid={testId} />
  );
}
