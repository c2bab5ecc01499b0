"""Page handlers that need no server."""

from zimage_ui.ui.handlers import keys_changed
from zimage_ui.ui.layout import all_key_names


def test_a_key_typed_on_the_page_relabels_every_provider_dropdown(monkeypatch):
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    names = all_key_names()
    values = ["rp-typed-key" if name == "RUNPOD_API_KEY" else "" for name in names]
    keys, *updates = keys_changed(3)(*values)
    assert keys == {"RUNPOD_API_KEY": "rp-typed-key"}
    assert len(updates) == 3
    labels = dict((pid, label) for label, pid in updates[0]["choices"])
    assert "unavailable" not in labels["runpod"]
    assert "rp-typed-key" not in str(updates)
