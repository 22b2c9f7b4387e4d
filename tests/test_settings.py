"""The declared settings table and the INI loader (configuration of the server issue)."""

import configparser
import os

import pytest

from cschat.settings import DEFAULT_SETTINGS, ConfigError, load_settings

EXAMPLE = os.path.join(os.path.dirname(__file__), os.pardir, "config.example.ini")


def test_example_config_lists_every_setting_with_its_default():
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(EXAMPLE, encoding="utf-8")
    listed = {(s, k): parser.get(s, k) for s in parser.sections() for k in parser[s]}
    declared = {(s, k): setting.default for s, keys in DEFAULT_SETTINGS.items()
                for k, setting in keys.items()}
    assert set(listed) == set(declared)
    for key, default in declared.items():
        if key != ("auth", "refresh_window"):  # its default is derived from token_ttl
            assert listed[key] == default, key
    load_settings(EXAMPLE)


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None)
    assert settings.server["port"] == 8700
    assert settings.database["path"] == str(tmp_path / "cschat.db")
    assert settings.uploads["dir"] == str(tmp_path / "uploads")
    assert settings.auth["refresh_window"] == 43200
    assert settings.chat["agent_capacity"] == 8


def test_paths_are_relative_to_the_config_file(tmp_path):
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "c.ini"
    path.write_text("[database]\npath = data/chat.db\n[auth]\ntoken_ttl = 600\n")
    settings = load_settings(str(path))
    assert settings.database["path"] == str(tmp_path / "conf" / "data" / "chat.db")
    assert settings.auth["refresh_window"] == 300


@pytest.mark.parametrize("text, named", [
    ("[chat]\nrate_limit = abc\n", "[chat] rate_limit"),
    ("[chat]\nrate_limit = 0\n", "[chat] rate_limit"),
    ("[server]\nport = 70000\n", "[server] port"),
    ("[database]\nsynchronous = maybe\n", "[database] synchronous"),
    ("[auth]\nallow_anonymous = perhaps\n", "[auth] allow_anonymous"),
    ("[server]\nallowed_origins = shop.example\n", "[server] allowed_origins"),
    ("[chat]\nratelimit = 3\n", "[chat] ratelimit"),
    ("[chats]\nrate_limit = 3\n", "[chats]"),
    ("rate_limit = 3\n", "section"),
])
def test_bad_settings_fail_naming_the_culprit(tmp_path, text, named):
    path = tmp_path / "c.ini"
    path.write_text(text)
    with pytest.raises(ConfigError, match=named.replace("[", r"\[").replace("]", r"\]")):
        load_settings(str(path))
