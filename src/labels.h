/* labels.h - Kubernetes label selectors.
 *
 * Provides: parsing of the selector string syntax (a=b, a==b, a!=b,
 * a in (x,y), a notin (x), a, !a; comma-separated terms, all must match) and
 * matching against a store object's labels. Uses: err.
 */
#ifndef KLUA_LABELS_H
#define KLUA_LABELS_H

#include "err.h"

#include <stddef.h>

typedef struct label_selector label_selector;

int label_selector_parse(const char *s, label_selector **out, kl_err *err); /* "" matches all */
void label_selector_free(label_selector *sel);
/* labels: npairs pairs as in store_obj, NUL-terminated key then value, one
 * after another ("app\0web\0tier\0fe\0"); NULL when npairs is 0. */
int label_selector_matches(const label_selector *sel, const char *labels, size_t npairs);
/* If the selector has a term key=value, return it (for index lookups). */
int label_selector_first_equality(const label_selector *sel, const char **key, const char **value);

#endif
