"""Log text to HTML: escaped always, SGR colours as classes, every other control dropped."""

from __future__ import annotations

from chute.server.ui.ansi import ansi_to_html, strip_ansi


def test_text_is_escaped() -> None:
    assert ansi_to_html("<script>alert('x')</script> & \"q\"") == (
        "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &#34;q&#34;")


def test_colours_and_styles_become_classes() -> None:
    html = ansi_to_html("\x1b[1;31mFAIL\x1b[0m ok \x1b[92mgreen\x1b[39m plain \x1b[38;5;4mblue256\x1b[m")
    assert html == ('<span class="ansi-bold ansi-fg-red">FAIL</span> ok <span class="ansi-fg-bright-green">green'
                    '</span> plain <span class="ansi-fg-blue">blue256</span>')


def test_truecolour_and_unknown_codes_do_not_leak_into_the_markup() -> None:
    # 24-bit colours are not mapped (no class), and their parameters are skipped, not misread.
    assert ansi_to_html("\x1b[41;38;2;1;2;3;1mX") == '<span class="ansi-bold ansi-bg-red">X</span>'
    # A malformed sequence is consumed up to its final byte; nothing of it becomes markup.
    assert ansi_to_html('\x1b[38;2;255;0;0mred\x1b[0m \x1b[999;"onmouseover=x m') == "red nmouseover=x m"


def test_other_escapes_and_controls_are_removed() -> None:
    text = "a\x1b]0;window title\x07b\x1b[2Kc\x1b[10;20Hd\x00\x08e\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\"
    assert ansi_to_html(text) == "abcdelink"
    assert strip_ansi(text) == "abcdelink"


def test_carriage_returns_keep_what_was_drawn_last() -> None:
    assert strip_ansi("progress 10%\rprogress 50%\rprogress 100%\nnext\r\n") == "progress 100%\nnext\n"
    assert ansi_to_html("a\r\nb") == "a\nb"


def test_a_sequence_cut_at_a_chunk_boundary_leaves_no_escape_character() -> None:
    assert "\x1b" not in ansi_to_html("before \x1b[3")
