"""The long-term memory benchmark's conversations and questions, generated deterministically.

Each conversation is one person talking to the character over a few sessions, in English or
Japanese: small talk, facts about themselves, and look-alike facts about other people (a
sister's dog, a friend's town). Two kinds of questions, each answered by the one turn that told
the fact:
- `paraphrase` (four per person): asks for one of the person's facts, worded unlike it, mostly
  in the conversation's language, sometimes in the other one;
- `entity` (one per person): asks what was said about a name, place or thing the person
  mentioned, as people ask "did I tell you about Kanazawa?".
`python -m bench.memory_dataset` rewrites bench/data/memory.json (the shipped copy;
tests/test_benchmarks.py checks that it is what this module generates).
"""

from __future__ import annotations

import json
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

DATA_FILE = Path(__file__).parent / "data" / "memory.json"
SEED = 14
CONVERSATIONS = 60
FACTS_PER_PERSON = 4
FILLER_PER_PERSON = 24
CROSS_LINGUAL_SHARE = 0.15
START = datetime(2026, 7, 1, 9, 0, tzinfo=UTC)

# kind: (values, English fact, English look-alike about someone else, English question,
#        Japanese fact, Japanese look-alike, Japanese question)
FACTS: dict[str, tuple[list[str], str, str, str, str, str, str]] = {
    "pet": (
        ["Pochi", "Mochi", "Kuro", "Luna", "Taro", "Hachi", "Sora", "Kinako"],
        "We adopted a puppy last spring and named him {v}.",
        "My sister's cat is called {o}.",
        "What is the name of my dog?",
        "去年の春に子犬を迎えて、{v}って名付けたんだ。",
        "妹の猫の名前は{o}だよ。",
        "うちの犬の名前、覚えてる？",
    ),
    "town": (
        ["Sapporo", "Sendai", "Kanazawa", "Fukuoka", "Matsuyama", "Nagasaki", "Kobe", "Nara"],
        "I grew up in {v}, near the station.",
        "My best friend moved to {o} last year.",
        "Which city am I from?",
        "私は{v}で育ったの、駅の近くでね。",
        "親友は去年{o}に引っ越した。",
        "私の出身地はどこだっけ？",
    ),
    "job": (
        ["a nurse", "a baker", "a librarian", "a carpenter", "a pharmacist", "a pilot"],
        "These days I work as {v} at a small place downtown.",
        "My brother trained as {o} but quit.",
        "What do I do for a living?",
        "最近は{v}として街の小さな職場で働いてる。",
        "兄は{o}の修行をしたけどやめちゃった。",
        "私の仕事って何だった？",
    ),
    "food": (
        ["ramen", "okonomiyaki", "curry rice", "sushi", "tempura", "gyoza", "oden"],
        "Nothing beats {v} after a long week, it is my absolute favourite.",
        "My father can't stand {o}.",
        "What food do I love most?",
        "一週間がんばった後の{v}が最高、いちばん好きな食べ物なの。",
        "父は{o}が苦手なんだ。",
        "私の大好物は何？",
    ),
    "instrument": (
        ["violin", "cello", "ukulele", "piano", "flute", "drums"],
        "I started taking {v} lessons on Tuesday evenings.",
        "My cousin plays the {o} in a band.",
        "Which instrument am I learning?",
        "火曜の夜に{v}のレッスンを始めたよ。",
        "いとこはバンドで{o}を弾いてる。",
        "私が習ってる楽器は？",
    ),
    "allergy": (
        ["peanuts", "shrimp", "cats", "pollen", "buckwheat", "eggs"],
        "I have to be careful, I am allergic to {v}.",
        "My coworker is allergic to {o}, poor thing.",
        "What am I allergic to?",
        "{v}アレルギーだから気をつけないといけないんだ。",
        "同僚は{o}アレルギーで大変そう。",
        "私のアレルギーって何だっけ？",
    ),
    "trip": (
        ["Okinawa", "Hokkaido", "Taiwan", "Seoul", "Iceland", "Portugal"],
        "In October I am flying to {v} for a week.",
        "My parents went to {o} in the spring.",
        "Where am I travelling in the autumn?",
        "10月に一週間{v}へ行く予定なんだ。",
        "両親は春に{o}へ行ったよ。",
        "秋の旅行先はどこだった？",
    ),
    "birthday": (
        ["January", "March", "May", "July", "September", "November"],
        "My birthday is in {v}, so please remember it.",
        "My niece was born in {o}.",
        "When is my birthday?",
        "私の誕生日は{v}だから覚えておいてね。",
        "姪は{o}生まれなんだ。",
        "私の誕生日はいつ？",
    ),
    "sport": (
        ["tennis", "badminton", "swimming", "climbing", "judo", "cycling"],
        "On weekends I go {v} with my club.",
        "My neighbour is really into {o}.",
        "What sport do I do on weekends?",
        "週末はクラブの仲間と{v}をしてる。",
        "隣の人は{o}に夢中なんだ。",
        "週末にやってるスポーツは？",
    ),
    "locker": (
        ["4721", "3058", "9164", "2287", "6630", "5179", "8042", "1396"],
        "The code for my gym locker is {v}, I keep forgetting it.",
        "My roommate's bike lock code is {o}.",
        "What's the code of my locker at the gym?",
        "ジムのロッカーの番号は{v}、すぐ忘れちゃう。",
        "ルームメイトの自転車の鍵の番号は{o}。",
        "ジムのロッカーの暗証番号、何番だっけ？",
    ),
    "sibling": (
        ["Kenji", "Aiko", "Haruto", "Yui", "Ren", "Mei"],
        "My younger sibling {v} just started university.",
        "My colleague's son {o} is in high school.",
        "What is my younger sibling called?",
        "下のきょうだいの{v}が大学に入ったばかり。",
        "同僚の息子の{o}くんは高校生。",
        "私の弟か妹の名前は？",
    ),
}
JA_VALUES = {
    "a nurse": "看護師",
    "a baker": "パン職人",
    "a librarian": "司書",
    "a carpenter": "大工",
    "a pharmacist": "薬剤師",
    "a pilot": "パイロット",
    "Sapporo": "札幌",
    "Sendai": "仙台",
    "Kanazawa": "金沢",
    "Fukuoka": "福岡",
    "Matsuyama": "松山",
    "Nagasaki": "長崎",
    "Kobe": "神戸",
    "Nara": "奈良",
    "ramen": "ラーメン",
    "okonomiyaki": "お好み焼き",
    "curry rice": "カレーライス",
    "sushi": "お寿司",
    "tempura": "天ぷら",
    "gyoza": "餃子",
    "oden": "おでん",
    "violin": "バイオリン",
    "cello": "チェロ",
    "ukulele": "ウクレレ",
    "piano": "ピアノ",
    "flute": "フルート",
    "drums": "ドラム",
    "peanuts": "ピーナッツ",
    "shrimp": "エビ",
    "cats": "猫",
    "pollen": "花粉",
    "buckwheat": "そば",
    "eggs": "卵",
    "Okinawa": "沖縄",
    "Hokkaido": "北海道",
    "Taiwan": "台湾",
    "Seoul": "ソウル",
    "Iceland": "アイスランド",
    "Portugal": "ポルトガル",
    "January": "1月",
    "March": "3月",
    "May": "5月",
    "July": "7月",
    "September": "9月",
    "November": "11月",
    "tennis": "テニス",
    "badminton": "バドミントン",
    "swimming": "水泳",
    "climbing": "クライミング",
    "judo": "柔道",
    "cycling": "サイクリング",
    "Pochi": "ポチ",
    "Mochi": "モチ",
    "Kuro": "クロ",
    "Luna": "ルナ",
    "Taro": "タロウ",
    "Hachi": "ハチ",
    "Sora": "ソラ",
    "Kinako": "きなこ",
    "Kenji": "ケンジ",
    "Aiko": "アイコ",
    "Haruto": "ハルト",
    "Yui": "ユイ",
    "Ren": "レン",
    "Mei": "メイ",
}
FILLER = {
    "en": [
        "It rained all morning, so I stayed in.",
        "Did you sleep well last night?",
        "I watched a documentary about deep sea fish.",
        "The train was late again today.",
        "I'm thinking of repainting my room.",
        "What kind of music do you like?",
        "My phone battery dies so fast lately.",
        "I found a nice café with big windows.",
        "Work was busy but I managed.",
        "I bought new shoes that hurt a bit.",
        "Do you believe in ghosts?",
        "The cherry trees near the river were beautiful.",
        "I cleaned the whole kitchen today.",
        "I'm trying to drink more water.",
        "Someone left an umbrella at the bus stop.",
        "I learned a new card game from a friend.",
        "The convenience store had a sale on ice cream.",
        "I want to read more books this year.",
        "My neighbour's garden is full of sunflowers.",
        "I stayed up too late watching videos.",
        "The sunset was orange and pink tonight.",
        "I'm a bit tired but happy.",
        "Have you ever seen snow?",
        "I tried meditating for five minutes.",
        "The wifi at home keeps dropping.",
        "I wrote a letter by hand for the first time in years.",
        "There was a festival in the park.",
        "I forgot my keys and had to wait outside.",
        "I think autumn is the best season.",
        "Tell me something funny.",
    ],
    "ja": [
        "朝からずっと雨だったから家にいたよ。",
        "昨日はよく眠れた？",
        "深海魚のドキュメンタリーを見たんだ。",
        "今日も電車が遅れてた。",
        "部屋の壁を塗り替えようかな。",
        "どんな音楽が好き？",
        "最近スマホの電池の減りが早い。",
        "大きな窓のある素敵なカフェを見つけた。",
        "仕事は忙しかったけど何とかなった。",
        "新しい靴を買ったけど少し痛い。",
        "幽霊って信じる？",
        "川沿いの桜がきれいだったよ。",
        "今日は台所を全部掃除した。",
        "水をもっと飲むようにしてる。",
        "バス停に誰かが傘を忘れていった。",
        "友達に新しいカードゲームを教わった。",
        "コンビニでアイスが安売りしてた。",
        "今年はもっと本を読みたいな。",
        "近所の庭がひまわりでいっぱい。",
        "動画を見てて夜更かししちゃった。",
        "今日の夕焼けはオレンジとピンクだった。",
        "ちょっと疲れたけど楽しかった。",
        "雪を見たことある？",
        "五分だけ瞑想してみた。",
        "家のWi-Fiがすぐ切れる。",
        "久しぶりに手紙を手書きした。",
        "公園でお祭りをやってた。",
        "鍵を忘れて外で待つはめになった。",
        "秋がいちばんいい季節だと思う。",
        "何か面白い話をして。",
    ],
}
REPLY = {"en": "I see, thank you for telling me.", "ja": "そうなんだ、教えてくれてありがとう。"}
ENTITY = {"en": "What did I tell you about {v}?", "ja": "{v}について私、何か話したっけ？"}


def _value(value: str, language: str) -> str:
    return JA_VALUES.get(value, value) if language == "ja" else value


def generate() -> dict[str, Any]:
    rng = random.Random(SEED)
    conversations: list[dict[str, Any]] = []
    questions: list[dict[str, Any]] = []
    for number in range(CONVERSATIONS):
        language = "ja" if number % 2 else "en"
        other_language = "en" if language == "ja" else "ja"
        user = f"person{number:02d}"
        kinds = rng.sample(sorted(FACTS), FACTS_PER_PERSON)
        said: list[tuple[str, str | None]] = [
            (line, None) for line in rng.sample(FILLER[language], FILLER_PER_PERSON)
        ]
        facts: list[tuple[str, str, str]] = []
        for kind in kinds:
            values, en_fact, en_other, en_q, ja_fact, ja_other, ja_q = FACTS[kind]
            value, other = rng.sample(values, 2)
            fact, look_alike = (en_fact, en_other) if language == "en" else (ja_fact, ja_other)
            fact_text = fact.format(v=_value(value, language))
            said.append((fact_text, kind))
            said.append((look_alike.format(o=_value(other, language)), None))
            asked_in = other_language if rng.random() < CROSS_LINGUAL_SHARE else language
            questions.append(
                {
                    "user": user,
                    "language": asked_in,
                    "type": "paraphrase",
                    "question": en_q if asked_in == "en" else ja_q,
                    "answer": fact_text,
                    "kind": kind,
                }
            )
            facts.append((kind, value, fact_text))
        kind, value, fact_text = rng.choice(facts)
        questions.append(
            {
                "user": user,
                "language": language,
                "type": "entity",
                "question": ENTITY[language].format(v=_value(value, language)),
                "answer": fact_text,
                "kind": kind,
            }
        )
        rng.shuffle(said)
        sessions = rng.randint(2, 4)
        moment = START + timedelta(days=number % 30, hours=rng.randint(0, 12))
        turns = []
        for index, (text, _) in enumerate(said):
            session = f"{user}-s{index * sessions // len(said) + 1}"
            moment += timedelta(minutes=rng.randint(1, 6))
            if index and index % max(len(said) // sessions, 1) == 0:
                moment += timedelta(days=rng.randint(1, 5))
            turns.append(
                {
                    "session": session,
                    "at": moment.isoformat(),
                    "user": text,
                    "reply": REPLY[language],
                }
            )
        conversations.append({"user": user, "language": language, "turns": turns})
    return {"seed": SEED, "conversations": conversations, "questions": questions}


def main() -> int:
    DATA_FILE.parent.mkdir(exist_ok=True)
    DATA_FILE.write_text(json.dumps(generate(), ensure_ascii=False, indent=1) + "\n")
    print(f"wrote {DATA_FILE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
