"""The settings schema: defaults, file, environment, validation, printing."""

from __future__ import annotations

from pathlib import Path

import pytest

from mediasvc.cli import main
from mediasvc.settings import MB, Settings, SettingsError, load_settings, render, schema

ROOT = Path(__file__).resolve().parent.parent


def test_defaults_follow_the_spec() -> None:
    settings = load_settings(environ={})
    assert settings.port == 8000 and settings.host == "127.0.0.1"
    assert settings.data_dir == "./var"
    limits = {t: settings.size_limit(t) for t in ("image", "video", "document", "audio")}
    assert limits == {"image": 10 * MB, "video": 500 * MB, "document": 50 * MB, "audio": 100 * MB}
    assert settings.default_page_size == 20 and settings.max_page_size == 100


def test_every_setting_has_help_and_group() -> None:
    for field in schema():
        assert field.metadata["help"], field.name
        assert field.metadata["group"], field.name


def test_file_then_environment(tmp_path: Path) -> None:
    config = tmp_path / "mediasvc.conf"
    config.write_text('port = 9001\nmax_image_size = "5MB"\nlog_level = "debug"\n')
    settings = load_settings(str(config), environ={"MEDIASVC_PORT": "9002"})
    assert settings.port == 9002
    assert settings.max_image_size == 5 * MB
    assert settings.log_level == "debug"


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"MEDIASVC_PORT": "eighty"}, "port"),
        ({"MEDIASVC_PORT": "70000"}, "port"),
        ({"MEDIASVC_MAX_IMAGE_SIZE": "ten"}, "max_image_size"),
        ({"MEDIASVC_MAX_IMAGE_SIZE": "0"}, "max_image_size"),
        ({"MEDIASVC_XHEADERS": "maybe"}, "xheaders"),
        ({"MEDIASVC_STORAGE": "ftp"}, "storage"),
        ({"MEDIASVC_NO_SUCH_THING": "1"}, "MEDIASVC_NO_SUCH_THING"),
        ({"MEDIASVC_JWT_SECRET": "short"}, "jwt_secret"),
        ({"MEDIASVC_JWT_ALGORITHMS": "none"}, "jwt_"),
        ({"MEDIASVC_JWT_ALGORITHMS": "RS256"}, "jwt_public_key"),
        ({"MEDIASVC_PUBLIC_URL": "javascript:alert(1)"}, "public_url"),
        ({"MEDIASVC_DEFAULT_PAGE_SIZE": "500"}, "default_page_size"),
    ],
)
def test_invalid_values_name_the_setting(environ: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=named):
        load_settings(environ=environ)


def test_bad_config_file(tmp_path: Path) -> None:
    config = tmp_path / "bad.conf"
    config.write_text("colour = 'blue'\n")
    with pytest.raises(SettingsError, match="unknown setting colour"):
        load_settings(str(config), environ={})
    config.write_text("port = [\n")
    with pytest.raises(SettingsError, match=r"bad\.conf"):
        load_settings(str(config), environ={})
    with pytest.raises(SettingsError, match=r"missing\.conf"):
        load_settings(str(tmp_path / "missing.conf"), environ={})


def test_render_masks_secrets() -> None:
    text = render(Settings(jwt_secret="s" * 40, mongodb_uri="mongodb://user:pw@db/"))
    assert "s" * 40 not in text and "pw@" not in text
    assert 'jwt_secret = "********"' in text


def test_example_config_is_generated_from_the_schema() -> None:
    example = (ROOT / "config" / "mediasvc.conf.example").read_text()
    assert example == render(commented=True), "run `make config-example`"
    for field in schema():
        assert f"# {field.name} = " in example


def test_cli_config_prints_and_refuses(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MEDIASVC_JWT_SECRET", "k" * 40)
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "max_video_size = 524288000" in out and "k" * 40 not in out
    monkeypatch.setenv("MEDIASVC_PORT", "nope")
    assert main(["config"]) == 2
    assert "setting port" in capsys.readouterr().err
