"""English and Simplified Chinese: the storefront, the switcher, blocks, API errors, admin, catalogs."""

import ast
import gettext
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.core.cache import cache
from django.urls import reverse
from django.utils import translation

from recommender import serving
from recommender.models import TrainingRun
from recommender.serving import published

ROOT = Path(__file__).resolve().parent.parent
CATALOGS = [ROOT / "recommender" / "locale", ROOT / "shopdemo" / "shop" / "locale"]
ZH = {"HTTP_ACCEPT_LANGUAGE": "zh-hans"}


@pytest.fixture(autouse=True)
def _english_afterwards():
    """LocaleMiddleware leaves the request's language active in the thread: reset it."""
    cache.clear()
    serving.connect()
    yield
    translation.deactivate()
    cache.clear()


# Settings and the storefront ----------------------------------------------------------


def test_languages_and_middleware():
    assert [code for code, _name in settings.LANGUAGES] == ["en", "zh-hans"]
    middleware = settings.MIDDLEWARE
    locale = middleware.index("django.middleware.locale.LocaleMiddleware")
    assert middleware.index("django.contrib.sessions.middleware.SessionMiddleware") < locale
    assert locale < middleware.index("django.middleware.common.CommonMiddleware")


@pytest.mark.django_db
def test_storefront_is_english_by_default(client, catalog):
    page = client.get("/").content.decode()
    assert '<html lang="en">' in page
    assert "All products" in page and "Shop by category" in page


@pytest.mark.django_db
def test_storefront_in_chinese_from_accept_language(client, catalog):
    page = client.get("/", **ZH).content.decode()
    assert '<html lang="zh-hans">' in page
    for text in ("全部商品", "按分类选购", "购物车", "登录", "加入购物车"):
        assert text in page, text
    assert "All products" not in page
    # product data stays as it is; names the catalog does not know too
    assert "Red Spotty Mug" in page and "Mugs" in page


@pytest.mark.django_db
def test_demo_category_names_are_translated(client, catalog):
    from shopdemo.shop.categories import CATEGORY_NAMES
    from shopdemo.shop.models import Category

    decor = Category.objects.create(name="Home Decor", slug="home-decor")
    assert "家居装饰" in client.get("/", **ZH).content.decode()
    assert "Home Decor" in client.get("/").content.decode()
    with translation.override("zh-hans"):
        assert str(decor) == "家居装饰"
        untranslated = [name for name in CATEGORY_NAMES if translation.gettext(name) == name]
    assert untranslated == []  # every category the loader makes has a Chinese name


@pytest.mark.django_db
def test_switcher_posts_to_set_language(client, catalog):
    page = client.get("/cart/").content.decode()
    form = re.search(r'<form class="lang-switch" action="([^"]+)" method="post".*?</form>', page, re.S)
    assert form and form[1] == reverse("set_language") == "/i18n/setlang/"
    assert 'name="csrfmiddlewaretoken"' in form[0]
    assert '<input type="hidden" name="next" value="/cart/">' in form[0]
    assert 'value="en"' in form[0] and 'value="zh-hans"' in form[0]
    assert ">English</button>" in form[0] and ">简体中文</button>" in form[0]
    assert re.search(r'value="en"[^>]*aria-current="true"', form[0])


@pytest.mark.django_db
def test_switcher_sets_the_language_cookie(client, catalog):
    response = client.post(reverse("set_language"), {"language": "zh-hans", "next": "/cart/"})
    assert response.status_code == 302 and response["Location"] == "/cart/"
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "zh-hans"

    page = client.get("/cart/").content.decode()  # the cookie wins over the (absent) header
    assert "购物车是空的。" in page and "开始购物" in page
    assert re.search(r'value="zh-hans"[^>]*aria-current="true"', page)

    client.post(reverse("set_language"), {"language": "en", "next": "/cart/"})
    assert "Your cart is empty." in client.get("/cart/", **ZH).content.decode()  # cookie over header


@pytest.mark.django_db
def test_messages_in_chinese(client, catalog):
    mug = catalog[0]
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    response = client.post(reverse("shop:cart_add", args=[mug.pk]), {"quantity": 2}, follow=True)
    assert f"已将 2 × {mug.title} 加入购物车。" in response.content.decode()


# Recommendation blocks and the API --------------------------------------------------


@pytest.mark.django_db
def test_blocks_render_chinese_titles_and_reasons(client, catalog):
    red, blue, bag = catalog[:3]
    published.publish("similar", serving.rec_settings.SIMILAR_ALGORITHM, {red.pk: [[blue.pk, 0.9, None]]})
    published.publish("bought_together", serving.rec_settings.BOUGHT_TOGETHER_ALGORITHM,
                   {red.pk: [[bag.pk, 0.8, None]]})
    page = client.get(red.get_absolute_url(), **ZH).content.decode()
    assert "相似商品" in page and "与“Red Spotty Mug”相似" in page
    assert "顾客还买了" in page and "购买“Red Spotty Mug”的顾客也买了这件商品" in page

    english = client.get(red.get_absolute_url()).content.decode()
    assert "Similar to Red Spotty Mug" in english and "相似" not in english


@pytest.mark.django_db
def test_api_reasons_follow_the_language(client, catalog):
    published.publish("trending", serving.rec_settings.TRENDING_ALGORITHM, {0: [[catalog[1].pk, 1.0, None]]})
    url = reverse("recommender:recommendations")
    assert client.get(url, **ZH).json()["results"][0]["reason"] == "当下热门"
    assert client.get(url).json()["results"][0]["reason"] == "Trending now"


@pytest.mark.django_db
def test_api_errors_in_chinese(client, catalog):
    response = client.post(reverse("recommender:events"), {"item": catalog[0].pk, "event": "nope"},
                           content_type="application/json", **ZH)
    assert response.status_code == 400
    assert response.json()["event"][0].startswith("未知的事件类型“nope”。已知类型：")

    response = client.get(reverse("recommender:recommendations"), {"limit": 0}, **ZH)
    assert response.status_code == 400
    assert response.json()["limit"] == ["请确保该值大于或者等于 1。"]  # DRF's own catalog

    response = client.get(reverse("recommender:recommendations"), {"limit": 40, "offset": 20}, **ZH)
    assert response.json()["offset"] == ["offset + limit 不能超过 50。"]

    response = client.get(reverse("recommender:recommendations"), {"limit": 0})
    assert response.json()["limit"] == ["Ensure this value is greater than or equal to 1."]


@pytest.mark.django_db
def test_api_permission_and_hardening_messages_in_chinese(client, catalog, alice, django_user_model):
    other = django_user_model.objects.create_user("bob17", password="pw-bob-123")
    client.force_login(alice)
    response = client.get(reverse("recommender:recommendations"), {"user": other.pk}, **ZH)
    assert response.status_code == 403
    assert response.json()["detail"] == "查看其他用户的推荐需要“recommender.view_interaction”权限。"
    response = client.get(reverse("recommender:recommendations"), {"user": other.pk})
    assert "needs the “recommender.view_interaction” permission" in response.json()["detail"]
    with translation.override("zh-hans"):
        from recommender.api.exceptions import PayloadTooLarge, ServiceUnavailable

        assert str(PayloadTooLarge().detail) == "请求体过大。"
        assert str(ServiceUnavailable().detail) == "服务暂时不可用，请稍后再试。"
        assert translation.gettext("An experiment needs at least two variants.") == "一个实验至少需要两个实验组。"


# Admin ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_admin_training_runs_in_chinese(admin_client):
    done = TrainingRun.objects.create(algorithm="itemknn", status=TrainingRun.Status.SUCCEEDED,
                                      is_active=True, metrics={"ndcg": 0.09}, progress=1.0,
                                      progress_message="done")
    running = TrainingRun.objects.create(algorithm="ease", status=TrainingRun.Status.RUNNING, progress=0.4,
                                         progress_message="epoch 2/5")
    page = admin_client.get(reverse("admin:recommender_trainingrun_changelist"), **ZH).content.decode()
    for text in ("训练记录", "立即训练", "指标图表", "成功", "运行中", "第 2/5 轮",
                 "已启用", "耗时"):
        assert text in page, text
    assert "Train now" not in page
    # a finished run's progress message ("done") is shown on its page, translated
    detail = admin_client.get(reverse("admin:recommender_trainingrun_change", args=[done.pk]), **ZH)
    assert "已完成" in detail.content.decode()

    progress = reverse("admin:recommender_trainingrun_progress")
    data = admin_client.get(progress, {"ids": running.pk}, **ZH).json()
    assert data["runs"][0]["progress_message"] == "第 2/5 轮"

    change = admin_client.get(reverse("admin:recommender_trainingrun_change", args=[done.pk]), **ZH)
    change = change.content.decode()
    assert f"itemknn #{done.pk} (成功)" in change and "已完成" in change and "数据快照" in change

    chart = admin_client.get(reverse("admin:recommender_trainingrun_chart"), **ZH).content.decode()
    assert "各版本的离线指标" in chart and "(已启用)" in chart
    assert ">完成时间<" in chart and ">已启用的版本<" in chart and "带黑圈的点是当前启用的版本" in chart  # axis, legend
    done.metrics = {"ndcg": 0.09, "coverage": 0.5, "train_seconds": 12.3456}
    done.artifact_size = 7_370_000
    done.save()
    change = admin_client.get(reverse("admin:recommender_trainingrun_change", args=[done.pk]), **ZH)
    change = change.content.decode()
    for text in ("商品覆盖率", "训练耗时", "12.35 秒", "7.37 MB", "模型文件大小"):
        assert text in change, text
    train = admin_client.get(reverse("admin:recommender_trainingrun_train"), **ZH).content.decode()
    assert "立即训练算法" in train and "已在排队或正在运行的算法不会重复加入队列" in train


@pytest.mark.django_db
def test_admin_interactions_in_chinese(admin_client, catalog):
    page = admin_client.get(reverse("admin:recommender_interaction_changelist"), **ZH).content.decode()
    assert "互动记录" in page and "加入购物车" in page  # the event filter's labels
    index = admin_client.get(reverse("admin:index"), **ZH).content.decode()
    assert "商品推荐" in index and "推荐列表" in index and "商店" in index


# Catalogs -----------------------------------------------------------------------------


def _po_entries(path):
    """``[(flags, msgctxt, msgid, msgid_plural, [msgstr...])]`` of a .po file (a small parser)."""
    entries = []
    for block in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")):
        lines = [line for line in block.strip().splitlines() if line]
        assert not any(line.startswith("#~") for line in lines), f"obsolete entry in {path}"
        flags, fields, key = set(), {}, None
        for line in lines:
            if line.startswith("#,"):
                flags.update(flag.strip() for flag in line[2:].split(","))
            elif line.startswith("#"):
                continue
            elif line.startswith('"'):
                fields[key] += ast.literal_eval(line)
            else:
                key, value = line.split(" ", 1)
                fields[key] = ast.literal_eval(value)
        if "msgid" in fields:
            strs = [v for k, v in sorted(fields.items()) if k == "msgstr" or k.startswith("msgstr[")]
            entries.append((flags, fields.get("msgctxt"), fields["msgid"], fields.get("msgid_plural"), strs))
    return entries


def _po_files():
    return sorted(p for folder in CATALOGS for p in folder.glob("*/LC_MESSAGES/*.po"))


def test_every_language_has_catalogs():
    for folder in CATALOGS:
        languages = {p.parent.parent.name for p in folder.glob("*/LC_MESSAGES/django.po")}
        assert languages == {"zh_Hans"}, folder


@pytest.mark.parametrize("po", _po_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_entry_is_translated(po):
    entries = _po_entries(po)
    header = entries[0]
    assert header[2] == "" and "Language: zh_Hans" in header[4][0] and "fuzzy" not in header[0]
    placeholder = re.compile(r"%\(\w+\)[-#0 +]*\d*(?:\.\d+)?[sdif]|\{\w+\}")
    assert len(entries) > 50
    for flags, _ctx, msgid, plural, strs in entries[1:]:
        assert "fuzzy" not in flags, msgid
        assert strs and all(s.strip() for s in strs), f"untranslated: {msgid!r}"
        for s in strs:
            wanted = sorted(placeholder.findall(plural or msgid))
            assert sorted(set(placeholder.findall(s))) == sorted(set(wanted)), (msgid, s)


@pytest.mark.parametrize("po", _po_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_compiled_catalog_matches_the_po(po):
    """The committed .mo is the compiled current .po (compilemessages was run after editing)."""
    mo = po.with_suffix(".mo")
    assert mo.exists(), f"{mo} is missing: run compilemessages"
    with mo.open("rb") as handle:
        compiled = gettext.GNUTranslations(handle)
    for _flags, ctx, msgid, plural, strs in _po_entries(po)[1:]:
        key = f"{ctx}\x04{msgid}" if ctx else msgid
        if plural:
            got = compiled.npgettext(ctx, msgid, plural, 1) if ctx else compiled.ngettext(msgid, plural, 1)
            assert got == strs[0], f"{msgid!r} differs in {mo.name}: recompile"
        else:
            assert compiled._catalog.get(key) == strs[0], f"{msgid!r} differs in {mo.name}: recompile"


def test_a_known_message_translates():
    with translation.override("zh-hans"):
        assert translation.gettext("Recommended for you") == "为你推荐"
        assert translation.gettext("Your cart is empty.") == "购物车是空的。"
        assert translation.pgettext("add to cart", "Add") == "加入购物车"
    with translation.override("en"):
        assert translation.gettext("Recommended for you") == "Recommended for you"
