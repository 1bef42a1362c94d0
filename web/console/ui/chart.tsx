// One ECharts chart in a container that names it (role="img" and aria-label: the figures
// themselves are in the table beside it). Disposed when it leaves the page; follows the
// container's size.
import { useEffect, useRef } from "preact/hooks";

import { mountChart } from "../charts.js";
import type { ChartOption } from "../charts.js";

export function Chart({ option, testId, label, tall }: {
  option: ChartOption;
  testId: string;
  label: string;
  tall?: boolean;
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
    <div ref={element} class={tall ? "chart chart-tall" : "chart"} role="img"
      aria-label={label} data-testid={testId} />
  );
}
