/* test_labels.c - label selector grammar, matching and error messages. */
#include "harness.h"
#include "labels.h"

#include <stdlib.h>

/* Labels of the objects the selectors are matched against. */
static const char web[] = "app\0web\0tier\0frontend\0app.kubernetes.io/name\0shop";
static const char db[] = "app\0db\0tier\0backend\0empty\0";
static const char *bare = NULL;

/* 1 = matches, 0 = does not, -1 = parse error. */
static int sel_match(const char *s, const char *labels, size_t npairs)
{
    label_selector *sel;
    kl_err err;
    if (label_selector_parse(s, &sel, &err) < 0)
        return -1;
    int m = label_selector_matches(sel, labels, npairs);
    label_selector_free(sel);
    return m;
}

static const char *parse_error(const char *s)
{
    static kl_err err;
    label_selector *sel = NULL;
    kl_err_clear(&err);
    if (label_selector_parse(s, &sel, &err) == 0) {
        label_selector_free(sel);
        return "(parsed)";
    }
    return err.msg;
}

TEST(empty_selector_matches_everything)
{
    CHECK(sel_match("", web, 3) == 1);
    CHECK(sel_match("   ", bare, 0) == 1);
}

TEST(equality)
{
    CHECK(sel_match("app=web", web, 3) == 1);
    CHECK(sel_match("app==web", web, 3) == 1);
    CHECK(sel_match("app=db", web, 3) == 0);
    CHECK(sel_match("app=web", bare, 0) == 0);
    CHECK(sel_match("app!=web", web, 3) == 0);
    CHECK(sel_match("app!=web", db, 3) == 1);
    /* as in Kubernetes, != matches objects without the key */
    CHECK(sel_match("app!=web", bare, 0) == 1);
    /* empty values */
    CHECK(sel_match("empty=", db, 3) == 1);
    CHECK(sel_match("empty=", web, 3) == 0);
    CHECK(sel_match("empty!=", db, 3) == 0);
}

TEST(set_based)
{
    CHECK(sel_match("app in (web,db)", web, 3) == 1);
    CHECK(sel_match("app in (web,db)", db, 3) == 1);
    CHECK(sel_match("app in (cache)", web, 3) == 0);
    CHECK(sel_match("app in (web)", bare, 0) == 0);
    CHECK(sel_match("app notin (web)", web, 3) == 0);
    CHECK(sel_match("app notin (web)", db, 3) == 1);
    CHECK(sel_match("app notin (web)", bare, 0) == 1);
    CHECK(sel_match("empty in (a,)", db, 3) == 1);
}

TEST(exists)
{
    CHECK(sel_match("tier", web, 3) == 1);
    CHECK(sel_match("tier", bare, 0) == 0);
    CHECK(sel_match("!tier", web, 3) == 0);
    CHECK(sel_match("!tier", bare, 0) == 1);
    CHECK(sel_match("!nope", web, 3) == 1);
}

TEST(all_terms_must_hold_and_whitespace_is_tolerated)
{
    CHECK(sel_match("app=web,tier=frontend", web, 3) == 1);
    CHECK(sel_match("app=web,tier=backend", web, 3) == 0);
    CHECK(sel_match("  app = web ,  tier  in ( frontend , x ) , ! nope , app.kubernetes.io/name ",
                    web, 3) == 1);
    CHECK(sel_match("app.kubernetes.io/name=shop", web, 3) == 1);
    CHECK(sel_match("app.kubernetes.io/name notin (shop)", web, 3) == 0);
    CHECK(sel_match("app in(web),tier", web, 3) == 1);
}

TEST(first_equality_for_index_lookups)
{
    label_selector *sel;
    const char *k = NULL, *v = NULL;
    CHECK(label_selector_parse("tier, app notin (x), app=web, tier=frontend", &sel, NULL) == 0);
    CHECK(label_selector_first_equality(sel, &k, &v) == 1);
    CHECK_STR(k, "app");
    CHECK_STR(v, "web");
    label_selector_free(sel);

    CHECK(label_selector_parse("tier in (a,b), !x", &sel, NULL) == 0);
    CHECK(label_selector_first_equality(sel, &k, &v) == 0);
    label_selector_free(sel);

    CHECK(label_selector_parse("tier in (a)", &sel, NULL) == 0);
    CHECK(label_selector_first_equality(sel, &k, &v) == 1);
    CHECK_STR(v, "a");
    label_selector_free(sel);
}

TEST(errors_name_the_selector_and_position)
{
    CHECK_STR(parse_error("a in (b"), "invalid label selector \"a in (b\": expected ')' at 7");
    CHECK_STR(parse_error("a in b"), "invalid label selector \"a in b\": expected '(' at 5");
    CHECK_STR(parse_error("a in ()"),
              "invalid label selector \"a in ()\": expected at least one value in the set at 6");
    CHECK_STR(parse_error("a=b,"), "invalid label selector \"a=b,\": expected a label key at 4");
    CHECK_STR(parse_error(",a"), "invalid label selector \",a\": expected a label key at 0");
    CHECK_STR(parse_error("a b"),
              "invalid label selector \"a b\": expected '=', '==', '!=', 'in', 'notin', ',' or "
              "the end at 2");
    CHECK_STR(parse_error("a=b c"), "invalid label selector \"a=b c\": expected ',' or the end at 4");
    CHECK_STR(parse_error("!a=b"), "invalid label selector \"!a=b\": expected ',' or the end at 2");
    CHECK_STR(parse_error("a in (b c)"),
              "invalid label selector \"a in (b c)\": expected ',' or ')' at 8");
    CHECK_STR(parse_error("-a=b"), "invalid label selector \"-a=b\": invalid label key at 0");
    CHECK_STR(parse_error("Example.com/a=b"),
              "invalid label selector \"Example.com/a=b\": invalid label key at 0");
    CHECK_STR(parse_error("a=b_"), "invalid label selector \"a=b_\": invalid label value at 2");
    CHECK_STR(parse_error("a>1"),
              "invalid label selector \"a>1\": expected '=', '==', '!=', 'in', 'notin', ',' or "
              "the end at 1");
    CHECK_STR(parse_error("a in (x,y),b notin (z,)"), "(parsed)");
}

TEST(long_names_are_checked)
{
    char key[80];
    memset(key, 'k', 63);
    key[63] = '\0';
    CHECK(sel_match(key, bare, 0) == 0);  /* 63 characters: valid */
    key[63] = 'k';
    key[64] = '\0';
    CHECK(sel_match(key, bare, 0) == -1); /* 64: too long */
}

int main(void)
{
    RUN(empty_selector_matches_everything);
    RUN(equality);
    RUN(set_based);
    RUN(exists);
    RUN(all_terms_must_hold_and_whitespace_is_tolerated);
    RUN(first_equality_for_index_lookups);
    RUN(errors_name_the_selector_and_position);
    RUN(long_names_are_checked);
    DONE();
}
