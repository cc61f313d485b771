"""Pure tests of whether a column looks personal: by its name, and by sampled values.

Nothing here touches a database or keeps a value: each function takes a name or one
value and answers with the names of the detectors that fired. The detectors are
deliberately narrow (a whole value must match, a checksum must hold), since a column that
is reported without reason teaches people to ignore the report.

QQ numbers and WeChat IDs have no shape of their own (a QQ number is 5 to 11 digits, as
is many a row id; a WeChat ID is 6 to 20 letters, digits, ``_`` and ``-``, as is many a
word), so those two fire only in context: the column's or the table's name says QQ or
WeChat, or another short text value in the same row does (a ``kind`` column holding
``qq`` beside a ``value`` column). A ``wxid_`` ID is recognised anywhere.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from datetime import date

# --- by name ---------------------------------------------------------------------------

#: category -> the name tokens (English and pinyin) that suggest it
NAME_TOKENS: dict[str, frozenset[str]] = {
    "email": frozenset({"email", "mail", "emailaddress", "mailbox", "youxiang", "dianziyouxiang"}),
    "phone": frozenset(
        {
            "phone",
            "telephone",
            "tel",
            "mobile",
            "cellphone",
            "msisdn",
            "fax",
            "shouji",
            "dianhua",
            "shoujihao",
            "lianxidianhua",
        }
    ),
    "ip": frozenset({"ip", "ipaddr", "ipv4", "ipv6", "ipaddress", "remoteaddr", "clientip"}),
    "qq": frozenset({"qq", "qqnumber", "qqhao"}),
    "wechat": frozenset({"wechat", "weixin", "wx", "wxid", "weixinhao", "openid", "unionid"}),
    "address": frozenset(
        {"address", "addr", "street", "postcode", "zipcode", "dizhi", "zhuzhi", "jiatingzhuzhi"}
    ),
    "name": frozenset(
        {
            "firstname",
            "lastname",
            "fullname",
            "surname",
            "givenname",
            "familyname",
            "realname",
            "nickname",
            "username",
            "displayname",
            "contactname",
            "xingming",
            "mingzi",
            "zhenshixingming",
            "nicheng",
        }
    ),
    "birth_date": frozenset(
        {"birth", "birthday", "birthdate", "dateofbirth", "dob", "shengri", "chushengriqi"}
    ),
    "id_number": frozenset(
        {
            "idnumber",
            "idcard",
            "idno",
            "nationalid",
            "ssn",
            "passport",
            "passportno",
            "identitynumber",
            "citizenid",
            "residentid",
            "shenfenzheng",
            "shenfenzhenghao",
            "sfz",
            "sfzh",
            "zhengjianhao",
        }
    ),
    "contact": frozenset({"contact", "lianxi", "lianxifangshi"}),
}
_ALL_TOKENS = frozenset().union(*NAME_TOKENS.values())
# "address" beside these is not a postal address.
_NOT_POSTAL = frozenset({"ip", "mac", "email", "mail", "wallet"})
# A bare "name" is a person's only in a table of people.
_PEOPLE_TABLES = re.compile(
    r"(user|account|customer|member|contact|employee|person|people|profile|patient|"
    r"student|client|staff|yonghu|kehu|huiyuan)",
)


def tokens(name: str) -> list[str]:
    """A column or table name split into lowercase words: ``userEmail_2`` -> user, email."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return [t for t in re.split(r"[^a-z]+", spaced.lower()) if t]


def _joins(words: list[str]) -> set[str]:
    """Every run of consecutive words, joined: first_name -> first, name, firstname."""
    out = set()
    for i in range(len(words)):
        for j in range(i + 1, min(len(words), i + 4) + 1):
            out.add("".join(words[i:j]))
    return out


# Which categories a name may suggest for a column of each kind of type: a DATETIME
# called email_verified_at holds no address, a number may be a phone or QQ number.
_BY_KIND: dict[str, frozenset[str]] = {
    "text": frozenset(NAME_TOKENS),
    "number": frozenset({"phone", "qq", "id_number"}),
    "date": frozenset({"birth_date"}),
    "other": frozenset(),
}


def name_categories(table: str, column: str, kind: str = "text") -> tuple[str, ...]:
    """The personal categories a column's name suggests, e.g. ('phone',) for mobile_no;
    ``kind`` is the column's type: text, number, date or other."""
    words = tokens(column)
    runs = _joins(words)
    allowed = _BY_KIND[kind]
    found = [c for c, known in NAME_TOKENS.items() if c in allowed and runs & known]
    if "address" in found and set(words) & _NOT_POSTAL:
        found.remove("address")
    if not found and kind == "text" and words == ["name"] and _PEOPLE_TABLES.search(table.lower()):
        found.append("name")
    return tuple(found)


# --- by value ---------------------------------------------------------------------------

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+")
_SEPARATORS = re.compile(r"[\s()\-]")  # not ".": 198.51.100.123 is no phone number
_CN_MOBILE = re.compile(r"(\+?86|0086)?1[3-9]\d{9}")
_E164 = re.compile(r"\+[1-9]\d{7,14}")
_QQ = re.compile(r"[1-9]\d{4,10}")
_WECHAT = re.compile(r"[A-Za-z][-_A-Za-z0-9]{5,19}")
_WXID = re.compile(r"wxid_[a-z0-9]{8,32}")
_CN_ID = re.compile(r"\d{17}[\dXx]")
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"
_MAX_CHARS = 254  # longer text is prose, not one of these values


def is_email(text: str) -> bool:
    return _EMAIL.fullmatch(text) is not None


def _digits(text: str) -> str:
    return _SEPARATORS.sub("", text)


def is_cn_mobile(text: str) -> bool:
    """A mainland Chinese mobile number: 1[3-9] and nine digits, with or without +86."""
    return _CN_MOBILE.fullmatch(_digits(text)) is not None


def is_e164(text: str) -> bool:
    """An international number: + and 8 to 15 digits (spaces and dashes allowed)."""
    return _E164.fullmatch(_digits(text)) is not None


def is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip())
    except ValueError:
        return False
    return True


def is_qq(text: str) -> bool:
    """The shape of a QQ number: 5 to 11 digits, not starting with 0 (context needed)."""
    return _QQ.fullmatch(text) is not None


def is_wechat_id(text: str) -> bool:
    """The shape of a WeChat ID: a letter, then 5 to 19 letters, digits, _ or -."""
    return _WECHAT.fullmatch(text) is not None


def is_wxid(text: str) -> bool:
    """A generated WeChat ID (``wxid_`` and lowercase letters and digits): no context needed."""
    return _WXID.fullmatch(text) is not None


def cn_id_check_char(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character of a resident ID's first 17 digits."""
    total = sum(int(d) * w for d, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def is_cn_resident_id(text: str) -> bool:
    """An 18-character resident ID number: a valid birth date and its checksum."""
    if _CN_ID.fullmatch(text) is None:
        return False
    try:
        date(int(text[6:10]), int(text[10:12]), int(text[12:14]))
    except ValueError:
        return False
    return cn_id_check_char(text[:17]) == text[17].upper()


def detect(value: object, context: Iterable[str] = ()) -> tuple[str, ...]:
    """The detectors one sampled value fires, given the words of its context (the
    column's and table's name categories and words, and the row's other short texts)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        return ()
    text = str(value).strip()
    if not text or len(text) > _MAX_CHARS:
        return ()
    # A label is not an ID: "wechat" in a kind column beside the value names it.
    words = set(context) - {text.lower()}
    found: list[str] = []
    if is_email(text):
        found.append("email")
    if is_cn_mobile(text):
        found.append("cn_mobile")
    elif is_e164(text):
        found.append("e164_phone")
    if isinstance(value, str) and is_ip(text):
        found.append("ip_address")
    if is_cn_resident_id(text):
        found.append("cn_resident_id")
    if words & NAME_TOKENS["qq"] and is_qq(text):
        found.append("qq_number")
    if is_wxid(text) or (words & NAME_TOKENS["wechat"] and is_wechat_id(text)):
        found.append("wechat_id")
    return tuple(found)


def context_words(table: str, column: str) -> set[str]:
    """The words of a column's own context: its name's and its table's."""
    return _joins(tokens(column)) | _joins(tokens(table))


def row_context(values: Iterable[object]) -> set[str]:
    """The labels among a row's values (a ``kind`` column's ``qq``): a value that is
    itself a name token says what the row's other values are."""
    return {v.lower() for v in values if isinstance(v, str) and v.lower() in _ALL_TOKENS}


__all__ = [
    "NAME_TOKENS",
    "cn_id_check_char",
    "context_words",
    "detect",
    "is_cn_mobile",
    "is_cn_resident_id",
    "is_e164",
    "is_email",
    "is_ip",
    "is_qq",
    "is_wechat_id",
    "is_wxid",
    "name_categories",
    "row_context",
    "tokens",
]
