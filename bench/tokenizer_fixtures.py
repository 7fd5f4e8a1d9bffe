#!/usr/bin/env python3
"""Fixtures for tests/unit/tokenizer_test.cpp, made with Hugging Face `tokenizers` itself.

Trains two small byte-level BPE tokenizers on the mixed text below and records what
`tokenizers` answers for a few hundred test strings:

  deepseek_v3.tokenizer.json  DeepSeek-V3's pre-tokenizer (../shared/MODEL.md §9): Sequence of
                              Split(\\p{N}{1,3}), Split(CJK/kana), Split(big regex), then
                              ByteLevel(add_prefix_space=false, use_regex=false); merges as
                              ["a", "b"] pairs; DeepSeek-OCR's added tokens (ids follow the
                              trained vocab; the real ids are recorded beside them).
  gpt2.tokenizer.json         ByteLevel(add_prefix_space=true, use_regex=true) alone; merges in
                              the legacy "a b" form, ignore_merges=true, and added tokens that
                              use lstrip / rstrip / single_word / normalized.
  expected.json               per string: encode(add_special_tokens=False).ids,
                              decode(ids, skip_special_tokens=False), and the pre-tokenizer's
                              pieces; decode() of random id lists; and the pieces of nine
                              more pre-tokenizers (every Split behavior, invert, String
                              patterns, Llama-3's (?i:...) pattern, prefix space in a Sequence).

Needs `tokenizers` (0.23.x); run where it is installed (the GPU machine):
  python3 bench/tokenizer_fixtures.py OUT_DIR
then copy OUT_DIR/*.json to tests/data/tokenizer/. Deterministic: fixed seeds, no clock.
"""
import json
import os
import random
import sys

# DeepSeek-V3's three split regexes (llama.cpp LLAMA_VOCAB_PRE_TYPE_DEEPSEEK3_LLM). The third
# holds literal CR and LF characters inside its classes, as llama.cpp's copy does.
DEEPSEEK_NUM = r"\p{N}{1,3}"
DEEPSEEK_CJK = "[一-龥぀-ゟ゠-ヿ]+"
DEEPSEEK_BIG = (
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+"
    "|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+"
    "| ?[\\p{P}\\p{S}]+[\r\n]*"
    "|\\s*[\r\n]+"
    "|\\s+(?!\\S)"
    "|\\s+"
)

# DeepSeek-OCR's tokens (MODEL.md §6.3): (content, real id, special, normalized).
DEEPSEEK_BASE_SPECIAL = [("<｜begin▁of▁sentence｜>", 0), ("<｜end▁of▁sentence｜>", 1),
                         ("<｜▁pad▁｜>", 2)]
DEEPSEEK_ADDED = [
    ("<｜place▁holder▁no▁0｜>", 128000, True, False),
    ("<｜place▁holder▁no▁1｜>", 128001, True, False),
    ("<｜fim▁hole｜>", 128800, False, True),
    ("<｜fim▁begin｜>", 128801, False, True),
    ("<｜fim▁end｜>", 128802, False, True),
    ("<｜User｜>", 128803, False, True),
    ("<｜Assistant｜>", 128804, False, True),
    ("<|EOT|>", 128805, True, True),
    ("<｜tool▁sep｜>", 128814, False, True),
    ("<image>", 128815, True, False),
    ("<|ref|>", 128816, True, False),
    ("<|/ref|>", 128817, True, False),
    ("<|det|>", 128818, True, False),
    ("<|/det|>", 128819, True, False),
    ("<|grounding|>", 128820, True, False),
    ("<td>", 128821, True, False),
    ("</td>", 128822, True, False),
    ("<tr>", 128823, True, False),
    ("</tr>", 128824, True, False),
    ("<|User|>", 128825, True, False),
    ("<|Assistant|>", 128826, True, False),
]

# GPT-2-style fixture: the OCR tokens plus ones that exercise every AddedToken flag.
# (content, special, normalized, lstrip, rstrip, single_word)
GPT2_ADDED = [
    ("<image>", True, False, False, False, False),
    ("<|ref|>", True, False, False, False, False),
    ("<|/ref|>", True, False, False, False, False),
    ("<|det|>", True, False, False, False, False),
    ("<|/det|>", True, False, False, False, False),
    ("<|grounding|>", True, False, False, False, False),
    ("<td>", True, False, False, False, False),
    ("</td>", True, False, False, False, False),
    ("<tr>", True, False, False, False, False),
    ("</tr>", True, False, False, False, False),
    ("<tr", False, False, False, False, False),         # prefix of <tr>: longest wins
    ("<td", False, True, False, False, False),          # normalized: second pass only
    ("<mask>", True, False, True, False, False),        # lstrip
    ("[SEP]", False, False, False, True, False),        # rstrip
    ("<both>", True, False, True, True, False),         # lstrip + rstrip
    ("hello world", False, True, False, False, True),   # single_word, contains a space
    ("naïve", False, False, False, False, True),        # single_word, non-ASCII
    ("ab", False, False, False, False, True),           # single_word inside words
    ("的", False, False, False, False, True),           # single_word, CJK neighbours
    ("<｜User｜>", False, True, False, False, False),
]

CORPUS = """\
DeepSeek-OCR compresses long documents into a small number of vision tokens. The decoder then
reads those tokens and writes the page back as markdown, including tables, formulas and figures.
It was trained on millions of pages: papers, books, slides, newspapers, receipts and handwriting.
Optical compression is the idea that a picture of text can hold ten times more words than the
same number of text tokens. At a compression ratio below ten, the precision stays above 97%.
The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs!
How vexingly quick daft zebras jump; sphinx of black quartz, judge my vow.
I'm sure they'll say it's fine, but we've seen what you'd do and I don't think she's done.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 256 1024 2048 4096 65536 3.14159 2.71828 -273.15
Dates 2024-10-20, 1999/12/31, 12:30:45; phone +86 10 1234 5678; price $1,299.99 or €49.50.
Version v1.2.3-rc4, build #20231118, IPv4 192.168.0.1, hex 0xDEADBEEF, email a.b@example.com.
URL https://github.com/deepseek-ai/DeepSeek-OCR/blob/main/README.md?tab=readme#usage
深度求索发布了一个新的光学字符识别模型。它能够把一整页文档压缩成很少的视觉标记，然后再由语言模型解码。
先天下之忧而忧，后天下之乐而乐。学而时习之，不亦说乎？有朋自远方来，不亦乐乎？
人工智能正在改变我们的生活方式，从自动驾驶到医疗诊断，从机器翻译到文字识别。
表格、公式、图表和化学结构式都可以被识别出来，并转换成Markdown或者HTML格式。
北京市海淀区中关村大街1号，邮编100080，电话010-12345678。2024年10月20日星期日。
日本語のテキストも含まれています。ひらがな、カタカナ、そして漢字が混ざっています。
東京は日本の首都です。コンピューターとインターネットはとても便利ですね。
ラーメンを食べに行きましょう！　今日はいい天気ですね。ありがとうございました。
한국어 문장도 조금 있습니다. 안녕하세요, 반갑습니다.
Привет, мир! Это пример текста на русском языке. Ελληνικά: Γειά σου κόσμε.
Français : « Où est la bibliothèque ? » Déjà vu, naïve café, crème brûlée, señor, Zürich.
Tiếng Việt có dấu: Hà Nội, thành phố Hồ Chí Minh. हिन्दी में पाठ: नमस्ते दुनिया। العربية: مرحبا بالعالم.
def encode(self, text: str) -> list[int]:
    ids = []
    for piece in self.pre_tokenize(text):
        ids.extend(self.bpe(piece))  # merge pairs by rank
    return ids

int main(int argc, char** argv) {
  for (int i = 0; i < argc; ++i) printf("%s\\n", argv[i]);
  return argc > 1 ? 0 : -1;
}

| Model | Tokens | Precision | Speed (pages/s) |
|-------|-------:|:---------:|-----------------|
| Tiny  | 64     | 87.1%     | 200,000         |
| Base  | 256    | 96.5%     | 33,000          |
| Gundam| 795    | 97.3%     | 4,200           |

<table><tr><td>名称</td><td>数量</td></tr><tr><td>苹果</td><td>12</td></tr></table>
\\begin{equation} E = mc^2, \\quad \\int_0^1 x^2 \\, dx = \\frac{1}{3} \\end{equation}
$$\\sum_{i=1}^{n} i = \\frac{n(n+1)}{2}$$ and $\\alpha + \\beta \\geq \\gamma$.
- [x] done item
- [ ] open item
> quoted text, **bold**, *italic*, `code`, ~~struck~~.
Emoji: 😀 😂 👍🏽 ❤️ 🇨🇳 🇯🇵 👨‍👩‍👧‍👦 🧑🏻‍💻 ✅ ⭐ 🔥 1️⃣ #️⃣
Tabs\tand\tspaces   mixed.\r\nWindows line end.\r\n\r\nTwo of them.
"""

WORDS_EN = ("the of and to in is for on that with as by this be are from at or an it which "
            "document page table figure text model token vision language image layout "
            "compression decoder encoder markdown formula chart recognition character "
            "paragraph heading column row cell value number result section reference").split()
WORDS_ZH = list("的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学"
                "对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头")
WORDS_JA = ("これ それ あれ どこ だれ なに ありがとう すみません テスト データ モデル "
            "ページ テーブル 文字 認識 画像 処理 東京 大阪 日本語").split()


def generated_corpus(rng, n_lines=400):
    lines = []
    for _ in range(n_lines):
        kind = rng.randrange(4)
        if kind == 0:
            words = [rng.choice(WORDS_EN) for _ in range(rng.randint(5, 14))]
            words[0] = words[0].capitalize()
            lines.append(" ".join(words) + rng.choice([".", "!", "?", ",", ":"]))
        elif kind == 1:
            lines.append("".join(rng.choice(WORDS_ZH) for _ in range(rng.randint(6, 20))) +
                         rng.choice(["。", "，", "！", "？", "；"]))
        elif kind == 2:
            lines.append("".join(rng.choice(WORDS_JA) for _ in range(rng.randint(3, 7))) + "。")
        else:
            cells = [str(rng.randint(0, 99999)) if rng.random() < 0.5 else rng.choice(WORDS_EN)
                     for _ in range(rng.randint(2, 5))]
            lines.append("| " + " | ".join(cells) + " |")
    return lines


# Characters the random strings are drawn from: every class the split regexes distinguish.
ALPHABET = (
    list("abcXYZ") + list("0123456789") + list("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") +
    [" ", " ", "  ", "\t", "\n", "\r", "\r\n", "\n\n", " \n", "\u000b", "\u000c"] +
    list("中文字龥一") + list("ぁあゟ") + list("゠アヿー") + list("ｱｶ") + list("한글") +
    list("éñüßøÆ") + list("Ωωжд") + ["e\u0301", "\u0301", "\u0308", "\u20e3", "\u0903"] +
    ["😀", "👍🏽", "👨‍👩‍👧", "🇯🇵", "❤️", "1️⃣", "\u200d", "\ufe0f", "🏽"] +
    list("€©±∑→√∞") + list("，。、「」！？：；（）") + list("١٣३１２Ⅻ²½") +
    ["\u00a0", "\u3000", "\u2028", "\u2029", "\u0085", "\u200b", "\ufeff", "\u2009"] +
    ["\u0000", "\u0001", "\u007f", "\u001b", "\ue000", "\U0001d54f", "\U00020000", "\u0378",
     "\U0001f600\U0001f3fb", "\U0010fffd"] +
    ["<image>", "<|ref|>", "<|/ref|>", "<td>", "</td>", "<tr>", "<tr", "<td", "<|ref", "<mask>",
     "[SEP]", "<both>", "hello world", "naïve", "ab", "的", "<｜User｜>", "<|EOT|>",
     "<｜begin▁of▁sentence｜>", "<|grounding|>"] +
    ["'s", "'t", "'re", "'ll", "'d", "'S"] + ["don", "you", "Hello", " world", " 42"]
)

HAND_STRINGS = [
    "",
    " ",
    "  ",
    "\n",
    "\r\n",
    "\t",
    "a",
    "Hello world",
    "Hello, world!",
    " leading space",
    "trailing space ",
    "trailing spaces   ",
    "multiple   spaces   between",
    "tab\tseparated\tvalues",
    "line one\nline two\r\nline three\rend",
    "\n\n\nthree newlines first",
    "ends with newlines\n\n",
    "  \n  \n  indented",
    "word  \t \n  word",
    "I'm sure they'll say it's fine, we've seen what you'd do.",
    "DON'T SHOUT, I'M HERE. It'S mixed.",
    "'s 't 're 've 'm 'll 'd",
    "0",
    "12",
    "123",
    "1234",
    "1234567890",
    "3.14159265358979",
    "-273.15°C",
    "$1,299.99",
    "１２３４５",
    "٣٤٥ and ३४५",
    "Ⅻ chapters, x² + y² = z², ½ cup",
    "2024年10月20日",
    "先天下之忧而忧",
    "深度求索发布了一个新的光学字符识别模型。",
    "北京市海淀区中关村大街1号，邮编100080。",
    "日本語のテキスト、ひらがなとカタカナ。",
    "ラーメン ｶﾀｶﾅ (half-width) ー",
    "𠀀𠀁 CJK Extension B is not in the 一-龥 range",
    "한국어 문장 안녕하세요",
    "Привет, мир! Ελληνικά",
    "Déjà vu, naïve café, crème brûlée, Zürich",
    "e\u0301 combining acute, a\u0308 umlaut",
    "\u0301 leading combining mark",
    "x \u0301 spaced mark",
    "नमस्ते दुनिया",
    "مرحبا بالعالم",
    "Tiếng Việt có dấu",
    "😀",
    "😀😂👍🏽",
    "👨‍👩‍👧‍👦 family",
    "🧑🏻‍💻 coder",
    "flags 🇨🇳🇯🇵🇺🇸",
    "keycaps 1️⃣ #️⃣ *️⃣",
    "❤️ red heart",
    "zero\u200bwidth\u200dspace\ufeffbom",
    "nbsp\u00a0here and ideographic\u3000space",
    "line\u2028separator and paragraph\u2029separator",
    "next\u0085line",
    "thin\u2009space",
    "controls \u0000 \u0001 \u001b \u007f",
    "private \ue000 use and \U0010fffd plane 16",
    "unassigned \u0378 code point",
    "math 𝕏𝕐 letters",
    "def f(x):\n    return x ** 2  # square\n",
    "int main() { return 0; }",
    "for (int i = 0; i < n; ++i) { sum += a[i]; }",
    "if (a && b || !c) { x <<= 2; } // done",
    "path/to/file.txt and C:\\Windows\\System32",
    "https://github.com/deepseek-ai/DeepSeek-OCR?x=1&y=2#frag",
    "email a.b+c@example.com",
    "| a | b |\n|---|---|\n| 1 | 2 |",
    "| Model | Tokens |\n|-------|-------:|\n| Tiny  | 64     |",
    "<table><tr><td>1</td><td>2</td></tr></table>",
    "<tr><td>名称</td></tr>",
    "<td class=\"x\">cell</td>",
    "\\frac{a}{b} + \\sqrt{x}",
    "$$\\sum_{i=1}^{n} i$$",
    "**bold** *italic* `code` ~~strike~~",
    "- [x] done\n- [ ] todo",
    "...!!!???",
    "--- *** ___",
    "(parens) [brackets] {braces} <angles>",
    "\"quoted\" 'single' «guillemets» „low“",
    "!!!abc ??xyz .Hello ,world",
    "a.b.c d-e-f g_h_i",
    "Mixed中文and English混合text",
    "数字123和汉字456混合",
    "カタカナABCひらがな123",
    "<image>",
    "<image>\n<|grounding|>Convert the document to markdown.",
    "<image>\nFree OCR.",
    "<image>\n<|grounding|>OCR this image.",
    "<image>\nParse the figure.",
    "<image>\nDescribe this image in detail.",
    "<image>\nLocate <|ref|>xxxx<|/ref|> in the image.",
    "<|ref|>title<|/ref|><|det|>[[12, 34, 567, 89]]<|/det|>",
    "<image><image>",
    "<<image>>",
    "<image",
    "<|ref|",
    "text<image>text",
    "  <image>  ",
    "<｜begin▁of▁sentence｜>Hello<｜end▁of▁sentence｜>",
    "<｜User｜>hi<｜Assistant｜>hello<|EOT|>",
    "<|User|>ascii bars<|Assistant|>",
    "<tr><td>a</td><td>b</td></tr>",
    "<trx <tr <td <td>",
    "a <mask> b",
    "a   <mask>   b",
    "<mask>start",
    "x[SEP]  y",
    "x [SEP]\n\ny",
    "a \t<both>\n b",
    "hello world",
    "say hello world!",
    "hello worlds",
    "_hello world",
    "naïve naïvely",
    "ab abc ab.",
    "我的书 的 的",
    "<｜place▁holder▁no▁0｜>",
    "<｜tool▁sep｜>",
]


def build_deepseek(corpus):
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(DEEPSEEK_NUM), behavior="isolated", invert=False),
        pre_tokenizers.Split(Regex(DEEPSEEK_CJK), behavior="isolated", invert=False),
        pre_tokenizers.Split(Regex(DEEPSEEK_BIG), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=3000, min_frequency=1, show_progress=False,
        special_tokens=[c for c, _ in DEEPSEEK_BASE_SPECIAL],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer=trainer)
    for content, _, special, normalized in DEEPSEEK_ADDED:
        t = AddedToken(content, special=special, normalized=normalized)
        if special:
            tok.add_special_tokens([t])
        else:
            tok.add_tokens([t])
    real = {c: i for c, i in DEEPSEEK_BASE_SPECIAL}
    real.update({c: i for c, i, _, _ in DEEPSEEK_ADDED})
    text = tok.to_str(pretty=True)
    return Tokenizer.from_str(text), real, text


def build_gpt2(corpus):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2500, min_frequency=1, show_progress=False, special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus, trainer=trainer)
    for content, special, normalized, lstrip, rstrip, single_word in GPT2_ADDED:
        t = AddedToken(content, special=special, normalized=normalized, lstrip=lstrip,
                       rstrip=rstrip, single_word=single_word)
        if special:
            tok.add_special_tokens([t])
        else:
            tok.add_tokens([t])
    # Legacy merges ("a b" strings) and ignore_merges. Both builders reload the text they
    # return, so the expected ids come from exactly the file we ship.
    data = json.loads(tok.to_str())
    data["model"]["merges"] = [" ".join(m) if isinstance(m, list) else m
                               for m in data["model"]["merges"]]
    data["model"]["ignore_merges"] = True
    text = json.dumps(data, ensure_ascii=False, indent=1)
    return Tokenizer.from_str(text), {}, text


# Llama-3's split pattern: a case-insensitive group and \p{N}{1,3}.
LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
          r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


def pre_tokenizer_variants():
    """Pre-tokenizers the C++ side supports beyond the two trained files: every Split
    behavior, invert, String patterns, (?i:...), and a prefix space inside a Sequence."""
    from tokenizers import Regex, pre_tokenizers as pt
    bl = pt.ByteLevel(add_prefix_space=False, use_regex=False)
    return {
        "llama3": pt.Sequence([pt.Split(Regex(LLAMA3), "isolated"), bl]),
        "removed_string": pt.Sequence([pt.Split(" ", "removed"), bl]),
        "merged_with_previous": pt.Sequence([pt.Split(Regex(r"\p{P}+"), "merged_with_previous"), bl]),
        "merged_with_next": pt.Sequence([pt.Split(Regex(r"\p{N}"), "merged_with_next"), bl]),
        "contiguous": pt.Sequence([pt.Split(Regex(r"[aeiou]"), "contiguous"), bl]),
        "isolated_invert": pt.Sequence([pt.Split(Regex(r"\p{L}+"), "isolated", invert=True), bl]),
        "removed_invert": pt.Sequence([pt.Split(Regex(r"\s+"), "removed", invert=True), bl]),
        "string_literal": pt.Sequence([pt.Split("a.b", "isolated"),
                                       pt.Split(Regex(r"[\x{4E00}-\x{9FFF}]"), "isolated"), bl]),
        "prefix_in_sequence": pt.Sequence([pt.Split(Regex(DEEPSEEK_NUM), "isolated"),
                                           pt.ByteLevel(add_prefix_space=True, use_regex=True)]),
    }


def random_strings(rng, n):
    out = []
    for _ in range(n):
        k = rng.randint(1, 24)
        out.append("".join(rng.choice(ALPHABET) for _ in range(k)))
    return out


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else "."
    os.makedirs(out_dir, exist_ok=True)
    import tokenizers
    rng = random.Random(20251020)
    corpus = CORPUS.splitlines(keepends=True) + generated_corpus(rng)

    strings = list(HAND_STRINGS)
    strings += random_strings(rng, 140)
    text = "".join(corpus)
    for _ in range(30):  # slices of the training text, cut anywhere
        a = rng.randrange(len(text))
        strings.append(text[a:a + rng.randint(1, 120)])
    strings.append(CORPUS)  # one long multi-line case
    seen = set()
    strings = [s for s in strings if not (s in seen or seen.add(s))]

    built = {"deepseek_v3": build_deepseek(corpus), "gpt2": build_gpt2(corpus)}
    meta = {}
    for name, (tok, real, tok_text) in built.items():
        fname = name + ".tokenizer.json"
        with open(os.path.join(out_dir, fname), "w", encoding="utf-8") as f:
            f.write(tok_text)
        added = {}
        for content in sorted({c for c, *_ in DEEPSEEK_ADDED} | {c for c, *_ in GPT2_ADDED} |
                              {c for c, _ in DEEPSEEK_BASE_SPECIAL} | {"<|endoftext|>"}):
            i = tok.token_to_id(content)
            if i is not None:
                added[content] = {"id": i, "deepseek_ocr_id": real.get(content)}
        meta[name] = {"file": fname, "vocab_size": tok.get_vocab_size(with_added_tokens=True),
                      "model_vocab_size": tok.get_vocab_size(with_added_tokens=False),
                      "tokens": added}

    cases = []
    for s in strings:
        case = {"text": s}
        for name, (tok, _, _) in built.items():
            ids = tok.encode(s, add_special_tokens=False).ids
            pieces = [p for p, _ in tok.pre_tokenizer.pre_tokenize_str(s)]
            case[name] = {"ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False),
                          "pieces": pieces}
        cases.append(case)

    decode_cases = []
    for name, (tok, _, _) in built.items():
        n = tok.get_vocab_size(with_added_tokens=True)
        for _ in range(40):
            ids = [rng.randrange(n) for _ in range(rng.randint(1, 12))]
            if rng.random() < 0.1:
                ids.insert(rng.randrange(len(ids) + 1), n + 7)  # unknown id: skipped
            decode_cases.append({"tokenizer": name, "ids": ids,
                                 "text": tok.decode(ids, skip_special_tokens=False)})

    # Pre-tokenizer variants: pieces only, on the hand-written strings and 40 random ones.
    from tokenizers import Tokenizer, models
    holder = Tokenizer(models.BPE())
    variant_strings = [x for x in HAND_STRINGS if x] + random_strings(rng, 40)
    variants = []
    for name, pre in pre_tokenizer_variants().items():
        holder.pre_tokenizer = pre
        variants.append({
            "name": name,
            "pre_tokenizer": json.loads(holder.to_str())["pre_tokenizer"],
            "cases": [{"text": x, "pieces": [p for p, _ in pre.pre_tokenize_str(x)]}
                      for x in variant_strings]})

    expected = {
        "generator": "bench/tokenizer_fixtures.py",
        "tokenizers_version": tokenizers.__version__,
        "tokenizers": meta,
        "cases": cases,
        "decode_cases": decode_cases,
        "pre_tokenizer_variants": variants,
    }
    with open(os.path.join(out_dir, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, ensure_ascii=False, indent=None, separators=(",", ":"))
        f.write("\n")

    print("tokenizers", tokenizers.__version__)
    for name, m in meta.items():
        print(name, "vocab", m["vocab_size"], "model", m["model_vocab_size"],
              "added", {k: v["id"] for k, v in m["tokens"].items()})
    print("cases", len(cases), "decode_cases", len(decode_cases))
    for fn in sorted(os.listdir(out_dir)):
        print(fn, os.path.getsize(os.path.join(out_dir, fn)))


if __name__ == "__main__":
    main()
