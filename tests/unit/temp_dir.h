/* Scratch directories for unit tests: a fresh one per call (malloc'd path, the caller removes and
 * frees it), and a count of what a directory holds (to check nothing, or no temporary, was left). */
#ifndef PEFTC_TEST_TEMP_DIR_H
#define PEFTC_TEST_TEMP_DIR_H

#include <CUnit/CUnit.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* /tmp/peftc_<tag>_XXXXXX, created */
static inline char *pc_test_temp_dir(const char *tag) {
    char tmpl[256];
    snprintf(tmpl, sizeof tmpl, "/tmp/peftc_%s_XXXXXX", tag);
    char *d = strdup(tmpl);
    CU_ASSERT_FATAL(d && mkdtemp(d));
    return d;
}

/* entries of a directory whose names do not start with "." (a file's temporary, <name>.tmp.*, counts) */
static inline int pc_test_dir_entries(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));) n += e->d_name[0] != '.';
    if (d) closedir(d);
    return n;
}

#endif
