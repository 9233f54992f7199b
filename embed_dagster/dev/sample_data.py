"""Seeded generator of realistic landing files (user comments) for the demo and the tests.

Why it looks like this: the pipeline's interesting parts are deduplication, the embedding cache
and clustering, so the data must have exact and near-exact repeats (about a third of rows, within
and across days), many distinct phrasings per topic (so clustering has real work), mixed Chinese and
English (about 60/40, some code-switching with code snippets), and a fixed, known set of bad rows per
day so conservation can be checked end to end.

Layout written per day (the reader's layout): ``<landing>/comments/date=YYYY-MM-DD/`` holding
``sample-0.jsonl``, ``sample-1.csv`` and ``sample-2.parquet`` (Parquet with a native UTC timestamp
column). ``per_day`` counts every row written, bad rows included, so a day has
``per_day - KNOWN_BAD_ROWS_PER_DAY`` valid rows. Same seed -> byte-identical files. Re-running
replaces the ``sample-*`` files of each generated day (written to a hidden temp name, then renamed,
so a concurrent reader never sees half a file) and leaves other files in the folder alone.

CLI: ``python -m embed_dagster.dev.sample_data --landing data/landing --start 2025-01-01 --days 3``.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import os
import random
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

KNOWN_BAD_ROWS_PER_DAY = 5
# kind -> (file it goes to, start of the reason read_landing_partition gives)
BAD_ROWS = {
    "empty_text": ("sample-0.jsonl", "text is empty"),
    "missing_comment_id": ("sample-0.jsonl", "comment_id is missing or empty"),
    "unparseable_line": ("sample-0.jsonl", "line is not valid JSON"),
    "whitespace_text": ("sample-1.csv", "text is empty: only whitespace"),
    "long_text": ("sample-2.parquet", "text longer than 20000 characters (50000)"),
}
FILE_NAMES = ("sample-0.jsonl", "sample-1.csv", "sample-2.parquet")
FILE_SHARES = (0.4, 0.3, 0.3)
DUPLICATE_SHARE = 0.3  # plus chance repeats of pool texts: about 1/3 of rows in all
LONG_TEXT_CHARS = 50_000
CHINESE_SHARE = 0.6
POOL_SHARE = 0.25  # new texts drawn from a seed-wide pool, so days repeat each other

# ------------------------------------------------------------------------------------ text bank
PRODUCTS_EN = [
    "headphones",
    "phone case",
    "blender",
    "running shoes",
    "jacket",
    "power bank",
    "smart watch",
    "desk lamp",
    "backpack",
    "keyboard",
    "coffee maker",
    "charger",
    "T-shirt",
    "vacuum",
]
PRODUCTS_ZH = [
    "耳机",
    "手机壳",
    "榨汁机",
    "跑鞋",
    "外套",
    "充电宝",
    "智能手表",
    "台灯",
    "双肩包",
    "键盘",
    "咖啡机",
    "充电器",
    "T恤",
    "吸尘器",
]
TOPICS = {
    "shipping": {
        "en": [
            "My {product} still hasn't arrived after {n} days.",
            "Delivery took {n} days, way longer than promised.",
            "Tracking has said 'in transit' for {n} days now.",
            "The courier left my {product} at the wrong address.",
            "Package arrived {n} days late and nobody told me why.",
            "Shipping was super fast, got my {product} in {n} days!",
            "Where is my order? It's been {n} days.",
            "Estimated delivery keeps getting pushed back, now {n} more days.",
        ],
        "zh": [
            "{product}等了{n}天还没到。",
            "物流太慢了，{n}天了还在路上。",
            "快递{n}天都没更新物流信息。",
            "快递员把{product}送错地址了。",
            "发货速度很快，{n}天就收到了{product}！",
            "说好的次日达，结果等了{n}天。",
            "物流一直显示运输中，已经{n}天了。",
            "我的订单到底什么时候发货？等了{n}天。",
        ],
    },
    "refund": {
        "en": [
            "I returned the {product} {n} days ago and still no refund.",
            "Refund request rejected for no reason.",
            "How long does a refund take? It's been {n} days.",
            "Got my refund of ${amount} quickly, thanks.",
            "They refunded ${amount} instead of the full ${amount2}.",
            "Still waiting for my money back for the {product}.",
        ],
        "zh": [
            "退货{n}天了，钱还没退回来。",
            "申请退款被拒绝，也不说原因。",
            "退款要多久？已经等了{n}天。",
            "退款{amount}元很快就到账了，谢谢。",
            "只退了{amount}元，明明付了{amount2}元。",
            "{product}退了，钱迟迟不到账。",
        ],
    },
    "app_crash": {
        "en": [
            "The app crashes every time I open the {screen} page.",
            "Can't log in, it keeps saying 'invalid password'.",
            "App freezes on the {screen} screen after the update.",
            "Login button does nothing on Android {n}.",
            "The app keeps logging me out every {n} minutes.",
            "Crashes right after the splash screen since version {n}.{n2}.",
        ],
        "zh": [
            "一打开{screen}页面app就闪退。",
            "登录不上，一直提示密码错误。",
            "更新之后{screen}页面卡死了。",
            "安卓{n}上点登录没反应。",
            "app每隔{n}分钟就自动退出登录。",
            "升级到{n}.{n2}版本后启动就闪退。",
        ],
        "mix": [
            "App 一打开就 crash，报错 `NullPointerException at {screen}Activity.java:{n}`",
            "login 的时候一直显示 'token expired'，试了 {n} 次",
            "{screen} 页面白屏，console 里是 `TypeError: cannot read property 'id' of undefined`",
            "iOS {n} 上 app 闪退，crash log: EXC_BAD_ACCESS (SIGSEGV)",
        ],
    },
    "battery": {
        "en": [
            "Battery of the {product} drains in {n} hours.",
            "The {product} won't hold a charge anymore.",
            "Battery life is amazing, lasts {n} days.",
            "Charging takes forever, over {n} hours.",
            "Gets really hot while charging.",
        ],
        "zh": [
            "{product}的电池{n}个小时就没电了。",
            "{product}充不进电了。",
            "续航很棒，能用{n}天。",
            "充电太慢了，要{n}个小时。",
            "充电的时候发烫得厉害。",
        ],
    },
    "customer_service": {
        "en": [
            "Customer service never answered my {n} emails.",
            "Support agent was rude and hung up on me.",
            "Waited {n} minutes on hold, then got disconnected.",
            "The support team solved my problem in {n} minutes, great job.",
            "Chat bot is useless, I need a real person.",
        ],
        "zh": [
            "客服一直不回消息，发了{n}次了。",
            "客服态度很差，直接挂电话。",
            "排队等了{n}分钟，然后断线了。",
            "客服{n}分钟就帮我解决了问题，好评。",
            "智能客服答非所问，要人工客服。",
        ],
    },
    "pricing": {
        "en": [
            "The price went up by ${amount} overnight.",
            "Coupon code {code} doesn't work at checkout.",
            "Great deal, saved ${amount} on the {product}.",
            "Too expensive for what you get.",
            "Charged ${amount2} but the listed price was ${amount}.",
        ],
        "zh": [
            "一夜之间涨价{amount}元。",
            "优惠券{code}结算时用不了。",
            "很划算，{product}省了{amount}元。",
            "性价比太低了。",
            "标价{amount}元，实际扣了{amount2}元。",
        ],
        "mix": [
            "优惠码 {code} 提示 'coupon expired'，明明还没过期",
            "checkout 的时候 discount 没生效，多付了{amount}元",
        ],
    },
    "quality": {
        "en": [
            "The {product} broke after {n} days.",
            "Cheap material, the {product} feels flimsy.",
            "Excellent quality, the {product} is solid.",
            "Stitching came apart on the first wash.",
            "Stopped working after {n} weeks.",
        ],
        "zh": [
            "{product}用了{n}天就坏了。",
            "做工粗糙，{product}质量很差。",
            "质量很好，{product}很结实。",
            "洗了一次就开线了。",
            "用了{n}周就不能用了。",
        ],
    },
    "size_fit": {
        "en": [
            "Size runs small, order one size up.",
            "The {product} is way too big, had to return it.",
            "Fits perfectly, true to size.",
            "Sleeves are {n} cm too long.",
        ],
        "zh": [
            "尺码偏小，建议买大一码。",
            "{product}太大了，只能退货。",
            "大小刚好，尺码很标准。",
            "袖子长了{n}厘米。",
        ],
    },
    "packaging": {
        "en": [
            "The box was crushed and the {product} was scratched.",
            "Way too much plastic in the packaging.",
            "Nice packaging, looks like a gift.",
            "Item arrived with no box at all.",
        ],
        "zh": [
            "箱子被压扁了，{product}也刮花了。",
            "包装用了太多塑料。",
            "包装很精美，送人很合适。",
            "收到的时候连盒子都没有。",
        ],
    },
    "account_security": {
        "en": [
            "Someone logged into my account from another country.",
            "I got a verification code I never requested.",
            "My account was hacked and ${amount} was spent.",
            "Two-factor authentication code never arrives.",
        ],
        "zh": [
            "有人在国外登录了我的账号。",
            "收到了我没申请的验证码。",
            "账号被盗，被刷了{amount}元。",
            "两步验证的短信一直收不到。",
        ],
        "mix": ["账号异地登录，IP 是 {ip}，我根本没去过那里", "收到 SMS 验证码 {code}，但我没有 login 过"],
    },
}
SCREENS = ["checkout", "profile", "cart", "settings", "order", "search", "payment"]
OPENERS = {
    "en": ["", "", "", "Honestly, ", "Ugh. ", "FYI: ", "Just a heads up: ", "Seriously?! ", "Hi, "],
    "zh": ["", "", "", "说实话，", "无语了，", "吐槽一下：", "请问一下，", "太离谱了！", "你好，"],
}
CLOSERS = {
    "en": [
        "",
        "",
        "",
        " Please fix this.",
        " Very disappointed.",
        " Thanks!",
        " Not buying again.",
        " Would recommend.",
        " Any update?",
    ],
    "zh": ["", "", "", "请尽快处理。", "非常失望。", "谢谢！", "再也不买了。", "推荐购买。", "有人管吗？"],
}
EMOJI = ["😡", "🙏", "👍", "😭", "🤔", "📦", "🔋", "💸", "😂", "❤️"]
SPACES = [" ", "  ", "\t", "\u3000", " \t "]


def _fill(template: str, rng: random.Random, lang: str) -> str:
    amount = rng.choice([5, 9, 10, 15, 20, 30, 49, 99, 120, 199, 300])
    return template.format(
        product=rng.choice(PRODUCTS_ZH if lang == "zh" else PRODUCTS_EN),
        n=rng.randint(2, 15),
        n2=rng.randint(0, 9),
        amount=amount,
        amount2=amount + rng.choice([5, 10, 20, 50]),
        screen=rng.choice(SCREENS),
        code=f"SAVE{rng.randint(10, 99)}",
        ip=f"{rng.randint(11, 223)}.{rng.randint(0, 255)}.{rng.randint(0, 255)}.{rng.randint(1, 254)}",
    )


def _new_text(rng: random.Random) -> str:
    """One comment: a topic template with slots, tone opener/closer, emoji sometimes."""
    topic = TOPICS[rng.choice(sorted(TOPICS))]
    lang = "zh" if rng.random() < CHINESE_SHARE else "en"
    key = "mix" if lang == "zh" and "mix" in topic and rng.random() < 0.3 else lang
    slot_lang = "zh" if key == "mix" else lang
    tone = "en" if key == "en" else "zh"
    first, second = rng.sample(topic[key], 2) if len(topic[key]) > 1 else (topic[key][0], topic[key][0])
    body = _fill(first, rng, slot_lang)
    if rng.random() < 0.1:  # a second sentence on the same topic
        body += ("" if tone == "zh" else " ") + _fill(second, rng, slot_lang)
    text = rng.choice(OPENERS[tone]) + body + rng.choice(CLOSERS[tone])
    if rng.random() < 0.25:
        text += rng.choice(["", " "]) + rng.choice(EMOJI) * rng.randint(1, 3)
    if rng.random() < 0.03:
        text = text.replace("。", "。\n", 1).replace(". ", ".\n", 1)  # multi-line comment
    return text


def _variant(text: str, rng: random.Random) -> str:
    """The same comment again: exactly, or differing only in case and whitespace."""
    choice = rng.random()
    if choice < 0.5:
        return text
    if choice < 0.65:
        return text.upper() if text.isascii() else text + rng.choice(SPACES)
    if choice < 0.8:
        return text.lower() if text.isascii() else rng.choice(SPACES) + text
    return rng.choice(SPACES).join(text.split(" ")) + rng.choice(["", " ", "  "])


def _texts_for_day(rng: random.Random, pool: list[str], n: int) -> list[str]:
    texts: list[str] = []
    for _ in range(n):
        if texts and rng.random() < DUPLICATE_SHARE:
            texts.append(_variant(rng.choice(texts), rng))
        elif rng.random() < POOL_SHARE:
            texts.append(rng.choice(pool))
        else:
            texts.append(_new_text(rng))
    return texts


# ------------------------------------------------------------------------------------------ rows
def _timestamp(day: dt.date, rng: random.Random) -> tuple[dt.datetime, str]:
    moment = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC) + dt.timedelta(
        seconds=rng.randrange(86400), microseconds=rng.choice([0, 0, rng.randrange(10**6)])
    )
    style = rng.random()
    if style < 0.6:
        text = moment.strftime("%Y-%m-%dT%H:%M:%S") + ("Z" if not moment.microsecond else f".{moment:%f}Z")
    elif style < 0.85:
        text = moment.astimezone(dt.timezone(dt.timedelta(hours=8))).isoformat()
    else:
        text = moment.strftime("%Y-%m-%d %H:%M:%S")  # no offset: the reader assumes UTC
    return moment, text


def _rows_for_day(day: dt.date, per_day: int, seed: int, pool: list[str]) -> list[dict]:
    rng = random.Random(f"{seed}:{day.isoformat()}")
    good = per_day - KNOWN_BAD_ROWS_PER_DAY
    rows = []
    for i, text in enumerate(_texts_for_day(rng, pool, good)):
        moment, stamp = _timestamp(day, rng)
        row = {"comment_id": f"c-{day:%Y%m%d}-{i:05d}", "created_at": stamp, "ts": moment, "text": text}
        if rng.random() < 0.7:
            row["user_id"] = f"u-{rng.randint(1, 5000):05d}"
        if rng.random() < 0.6:
            row["platform"] = rng.choice(["ios", "android", "web"])
        if rng.random() < 0.5:
            row["rating"] = rng.randint(1, 5)
        rows.append(row)
    return rows


def _split(rows: list[dict]) -> list[list[dict]]:
    a = round(len(rows) * FILE_SHARES[0])
    b = a + round(len(rows) * FILE_SHARES[1])
    return [rows[:a], rows[a:b], rows[b:]]


def _bad_rows(day: dt.date, moment: dt.datetime) -> dict[str, dict]:
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    base = f"c-{day:%Y%m%d}-bad"
    sentence = "This review goes on and on. 这条评论太长了。"
    long_text = (sentence * (LONG_TEXT_CHARS // len(sentence) + 1))[:LONG_TEXT_CHARS]
    return {
        "empty_text": {"comment_id": f"{base}-empty", "created_at": stamp, "text": ""},
        "missing_comment_id": {"created_at": stamp, "text": "Where did my comment id go?"},
        "unparseable_line": None,  # written raw, see _jsonl_bytes
        "whitespace_text": {"comment_id": f"{base}-blank", "created_at": stamp, "text": " \t\u3000 "},
        "long_text": {"comment_id": f"{base}-long", "created_at": stamp, "text": long_text, "ts": moment},
    }


def _jsonl_bytes(rows: list[dict], bad: dict, day: dt.date, rng: random.Random) -> bytes:
    out = []
    for row in rows:
        obj = {k: v for k, v in row.items() if k != "ts"}
        out.append(json.dumps(obj, ensure_ascii=rng.random() < 0.2))
    inserts = [
        json.dumps(bad["empty_text"]),
        json.dumps(bad["missing_comment_id"]),
        f'{{"comment_id": "c-{day:%Y%m%d}-bad-json", "created_at": "{day}", "text": "cut off in',
    ]
    for line in inserts:
        out.insert(rng.randint(0, len(out)), line)
    return ("\n".join(out) + "\n").encode()


def _csv_bytes(rows: list[dict], bad: dict, rng: random.Random) -> bytes:
    rows = [*rows]
    rows.insert(rng.randint(0, len(rows)), bad["whitespace_text"])
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf,
        fieldnames=["comment_id", "created_at", "text", "user_id", "platform"],
        extrasaction="ignore",
        lineterminator="\n",
    )
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode()


def _parquet_bytes(rows: list[dict], bad: dict, rng: random.Random) -> bytes:
    rows = [*rows]
    rows.insert(rng.randint(0, len(rows)), bad["long_text"])
    table = pa.table(
        {
            "comment_id": pa.array([r["comment_id"] for r in rows], pa.string()),
            "created_at": pa.array([r["ts"] for r in rows], pa.timestamp("us", tz="UTC")),
            "text": pa.array([r["text"] for r in rows], pa.string()),
            "rating": pa.array([r.get("rating") for r in rows], pa.int32()),
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _pool(seed: int) -> list[str]:
    rng = random.Random(f"{seed}:pool")
    return [_new_text(rng) for _ in range(200)]


def generate_landing(
    landing_root: Path | str, start: dt.date, days: int, per_day: int = 400, seed: int = 7
) -> dict[dt.date, dict]:
    """Write ``days`` days of sample files; return per-day counts, including which rows are bad."""
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    if per_day <= KNOWN_BAD_ROWS_PER_DAY:
        raise ValueError(f"per_day must be more than {KNOWN_BAD_ROWS_PER_DAY} (the bad rows), got {per_day}")
    pool = _pool(seed)
    result = {}
    for offset in range(days):
        day = start + dt.timedelta(days=offset)
        rows = _rows_for_day(day, per_day, seed, pool)
        rng = random.Random(f"{seed}:{day.isoformat()}:files")
        bad = _bad_rows(day, rows[0]["ts"] if rows else dt.datetime.combine(day, dt.time(), dt.UTC))
        parts = _split(rows)
        payloads = {
            FILE_NAMES[0]: _jsonl_bytes(parts[0], bad, day, rng),
            FILE_NAMES[1]: _csv_bytes(parts[1], bad, rng),
            FILE_NAMES[2]: _parquet_bytes(parts[2], bad, rng),
        }
        folder = Path(landing_root) / "comments" / f"date={day.isoformat()}"
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("sample-*"):
            old.unlink()
        for name, data in payloads.items():
            _write_atomic(folder / name, data)
        result[day] = {
            "rows_written": per_day,
            "valid_rows": len(rows),
            "bad_rows_written": KNOWN_BAD_ROWS_PER_DAY,
            "bad_rows": {
                kind: {"file": where, "reason_starts_with": reason}
                for kind, (where, reason) in BAD_ROWS.items()
            },
            "files": {
                name: len(part) + sum(1 for f, _ in BAD_ROWS.values() if f == name)
                for name, part in zip(FILE_NAMES, parts, strict=True)
            },
            "folder": folder.as_posix(),
        }
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m embed_dagster.dev.sample_data", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--landing", type=Path, default=Path("data/landing"), help="landing root folder")
    parser.add_argument("--start", default="2025-01-01", help="first day, YYYY-MM-DD")
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--per-day", type=int, default=400, help="rows per day, bad rows included")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    try:
        start = dt.date.fromisoformat(args.start)
    except ValueError:
        parser.error(f"--start must be a date like 2025-01-01, got {args.start!r}")
    try:
        stats = generate_landing(args.landing, start, args.days, args.per_day, args.seed)
    except ValueError as exc:
        parser.error(str(exc))
    except OSError as exc:
        print(f"error: cannot write under {args.landing}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    for day, s in stats.items():
        files = ", ".join(f"{name} ({n} rows)" for name, n in s["files"].items())
        print(f"{day}: {s['rows_written']} rows ({s['bad_rows_written']} bad) -> {s['folder']}: {files}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
