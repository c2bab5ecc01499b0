"""The Providers tab: what each provider has cost this team (or, on a public Space, this visitor)
in time, failures and money, as a table and two charts."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr
import pandas as pd

from zimage_ui.history import history_from_env
from zimage_ui.provider_stats import (
    STATS_COLUMNS,
    RunRecord,
    latency_points,
    provider_stats,
    stats_rows,
    success_by_hour,
)
from zimage_ui.ui.common import PRIVATE, RUNS_LIMIT, SessionState
from zimage_ui.ui.form import Updates, Values


def records_for(runs: object) -> tuple[list[RunRecord], str]:
    """The runs the view covers, and whose they are: the team's log, else this browser's runs."""
    store = history_from_env()
    if store is not None:
        return store.run_records(), "the team's run log"
    items = runs[:RUNS_LIMIT] if isinstance(runs, list) else []
    return [record for item in items if (record := RunRecord.from_dict(item))], "this browser's runs"


@dataclass
class ProvidersTab:
    note: gr.Markdown
    table: gr.Dataframe
    latency: gr.BarPlot
    success: gr.LinePlot

    def wire(self, tab: gr.Tab, state: SessionState) -> None:
        self._runs = state.runs
        outputs = [self.note, self.table, self.latency, self.success]
        tab.select(self.on_show, {state.runs}, outputs, **PRIVATE)

    def on_show(self, data: Values) -> Updates:
        records, whose = records_for(data[self._runs])
        rows = provider_stats(records)
        if not rows:
            note = f"No runs yet in {whose}: generate, compare or sweep, then come back."
        else:
            runs = sum(row.runs for row in rows)
            note = (
                f"{runs} runs from {whose} (stopped runs left out). Times are whole runs as the "
                "person waited for them, queue included; the median and p95 count successful runs."
            )
        latency = pd.DataFrame(latency_points(records), columns=["provider", "seconds"])
        success = pd.DataFrame(success_by_hour(records), columns=["provider", "hour", "success", "runs"])
        success["hour"] = pd.to_datetime(success["hour"], utc=True, errors="coerce")
        return {
            self.note: note,
            self.table: {
                "headers": STATS_COLUMNS,
                "data": stats_rows(rows) or [["no runs", "", "", "", "", "", ""]],
            },
            self.latency: latency,
            self.success: success,
        }


def build_providers_tab() -> ProvidersTab:
    kept = "the team's run log" if history_from_env() is not None else "this browser's own runs"
    gr.Markdown(f"How each provider has done for you, from {kept}.")
    note = gr.Markdown("Open this tab to see the figures.", elem_id="providers-note")
    table = gr.Dataframe(interactive=False, elem_id="providers-table")
    latency = gr.BarPlot(
        x="seconds",
        y="seconds",
        color="provider",
        x_bin=1.0,
        y_aggregate="count",
        title="How long runs took",
        x_title="seconds (1 s bins)",
        y_title="runs",
        elem_id="providers-latency",
    )
    success = gr.LinePlot(
        x="hour",
        y="success",
        color="provider",
        title="Share of runs that succeeded, by hour (UTC)",
        y_title="succeeded",
        y_lim=[0, 1],
        elem_id="providers-success",
    )
    return ProvidersTab(note, table, latency, success)
