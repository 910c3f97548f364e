/* Directories written as a whole (runtime/atomic_dir.c): the swap, what survives it, and the
 * recovery of every state a crash can leave (made by killing a child at each commit point). */
#include "cu_main.h"
#include "runtime/atomic_dir.h"
#include "runtime/fileio.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char root[256];

static void path_of(char *buf, size_t len, const char *rel) {
    if ((size_t)snprintf(buf, len, "%s/%s", root, rel) >= len) buf[0] = 0;
}

static void put(const char *rel, const char *text) {
    char p[512], err[256];
    path_of(p, sizeof p, rel);
    CU_ASSERT_EQUAL_FATAL(pc_write_file_atomic(p, text, strlen(text), err, sizeof err), 0);
}

static void make_dir(const char *rel) {
    char p[512];
    path_of(p, sizeof p, rel);
    CU_ASSERT_FATAL(mkdir(p, 0777) == 0 || errno == EEXIST);
}

/* the file's text, "" when it is missing */
static const char *text_of(const char *rel) {
    static char buf[256]; /* test-local scratch */
    char p[512], err[256], *data = NULL;
    size_t n = 0;
    path_of(p, sizeof p, rel);
    buf[0] = 0;
    if (pc_read_file(p, &data, &n, err, sizeof err) == 0) snprintf(buf, sizeof buf, "%s", data);
    free(data);
    return buf;
}

static bool present(const char *rel) {
    char p[512];
    struct stat st;
    path_of(p, sizeof p, rel);
    return lstat(p, &st) == 0;
}

/* no temporaries of ours left in root */
static int temporaries(void) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "ls -a %s | grep -c peftc- > /dev/null", root);
    return system(cmd) == 0;
}

static void fresh_root(void) {
    snprintf(root, sizeof root, "%s/atomic_dir_test", PEFTC_BINARY_DIR);
    pc_remove_tree(root);
    CU_ASSERT_FATAL(mkdir(root, 0777) == 0);
}

/* the previous adapter: two files replaced by the new one, a user's file, a checkpoint
 * subdirectory and optimizer state the caller says must go */
static void previous_dir(void) {
    make_dir("out");
    put("out/config.json", "old config");
    put("out/weights", "old weights");
    put("out/notes.txt", "user notes");
    put("out/optimizer", "old state");
    make_dir("out/checkpoint-2");
    put("out/checkpoint-2/weights", "ck2");
}

static int stage_new(pc_dir_txn *t) {
    char dir[512], p[4200], err[256];
    path_of(dir, sizeof dir, "out");
    if (pc_dir_begin(t, dir, err, sizeof err)) return -1;
    snprintf(p, sizeof p, "%s/config.json", t->stage);
    pc_write_file_atomic(p, "new config", 10, err, sizeof err);
    snprintf(p, sizeof p, "%s/weights", t->stage);
    return pc_write_file_atomic(p, "new weights", 11, err, sizeof err);
}

static const char *const dropped[] = {"optimizer", NULL};

static void check_new_dir(void) {
    CU_ASSERT_STRING_EQUAL(text_of("out/config.json"), "new config");
    CU_ASSERT_STRING_EQUAL(text_of("out/weights"), "new weights");
    CU_ASSERT_STRING_EQUAL(text_of("out/notes.txt"), "user notes");
    CU_ASSERT_STRING_EQUAL(text_of("out/checkpoint-2/weights"), "ck2");
    CU_ASSERT_FALSE(present("out/optimizer"));
    CU_ASSERT_FALSE(present("out/.peftc-old"));
    CU_ASSERT_FALSE(temporaries());
}

static void check_old_dir(void) {
    CU_ASSERT_STRING_EQUAL(text_of("out/config.json"), "old config");
    CU_ASSERT_STRING_EQUAL(text_of("out/weights"), "old weights");
    CU_ASSERT_STRING_EQUAL(text_of("out/optimizer"), "old state");
    CU_ASSERT_STRING_EQUAL(text_of("out/checkpoint-2/weights"), "ck2");
    CU_ASSERT_FALSE(present("out/.peftc-old"));
    CU_ASSERT_FALSE(temporaries());
}

static void test_create(void) {
    fresh_root();
    pc_dir_txn t;
    char err[256];
    CU_ASSERT_EQUAL_FATAL(stage_new(&t), 0);
    CU_ASSERT_FALSE(present("out"));
    CU_ASSERT_EQUAL(pc_dir_commit(&t, NULL, err, sizeof err), 0);
    CU_ASSERT_STRING_EQUAL(text_of("out/config.json"), "new config");
    CU_ASSERT_FALSE(temporaries());
}

static void test_replace(void) {
    for (int exchange = 0; exchange < 2; exchange++) {
        fresh_root();
        previous_dir();
        pc_dir_txn t;
        char err[256];
        CU_ASSERT_EQUAL_FATAL(stage_new(&t), 0);
        int rc = exchange ? pc_dir_commit(&t, dropped, err, sizeof err)
                          : pc_dir_commit_no_exchange(&t, dropped, err, sizeof err);
        CU_ASSERT_EQUAL(rc, 0);
        check_new_dir();
    }
}

static void test_abort(void) {
    fresh_root();
    previous_dir();
    pc_dir_txn t;
    CU_ASSERT_EQUAL_FATAL(stage_new(&t), 0);
    pc_dir_abort(&t);
    put("out/optimizer", "old state");
    check_old_dir();
}

static void test_not_a_directory(void) {
    fresh_root();
    put("out", "a file");
    pc_dir_txn t;
    char dir[512], err[256];
    path_of(dir, sizeof dir, "out");
    CU_ASSERT_EQUAL(pc_dir_begin(&t, dir, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "not a directory"));
}

/* a child stages and commits with PEFTC_CRASH_AT=point:out and dies there; then the next
 * begin in the same parent (a later run) must leave the old or the new directory, whole */
static void crash_at(const char *point, bool exchange, bool expect_new) {
    fresh_root();
    previous_dir();
    pid_t pid = fork();
    CU_ASSERT_FATAL(pid >= 0);
    if (pid == 0) {
        char spec[64], err[256];
        snprintf(spec, sizeof spec, "%s:out", point);
        setenv("PEFTC_CRASH_AT", spec, 1);
        pc_dir_txn t;
        if (stage_new(&t)) _exit(3);
        if (exchange) pc_dir_commit(&t, dropped, err, sizeof err);
        else pc_dir_commit_no_exchange(&t, dropped, err, sizeof err);
        _exit(0);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    CU_ASSERT(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    char dir[512], other[512], err[256];
    path_of(dir, sizeof dir, "out");
    path_of(other, sizeof other, "next");
    pc_dir_txn next;
    CU_ASSERT_EQUAL_FATAL(pc_dir_begin(&next, other, err, sizeof err), 0);
    pc_dir_abort(&next);
    if (expect_new) check_new_dir();
    else check_old_dir();
}

static void test_crash_staged(void) { crash_at("staged", true, false); }
static void test_crash_swapped(void) { crash_at("swapped", true, true); }
static void test_crash_carried(void) { crash_at("carried", true, true); }
/* between the fallback's two renames: the previous directory comes back */
static void test_crash_moved_aside(void) { crash_at("moved-aside", false, false); }
static void test_crash_carried_fallback(void) { crash_at("carried", false, true); }

/* a live process's temporaries are not touched */
static void test_live_owner_kept(void) {
    fresh_root();
    previous_dir();
    char p[512], err[256];
    snprintf(p, sizeof p, ".out.peftc-new.%ld", (long)getppid());
    make_dir(p);
    pc_dir_txn t;
    CU_ASSERT_EQUAL_FATAL(stage_new(&t), 0);
    CU_ASSERT_EQUAL(pc_dir_commit(&t, NULL, err, sizeof err), 0);
    CU_ASSERT(present(p));
}

static CU_TestInfo tests[] = {
    {"a new directory appears whole", test_create},
    {"replacing keeps foreign entries, drops the named ones (exchange and fallback)", test_replace},
    {"abort leaves the previous directory", test_abort},
    {"a file where the directory should be", test_not_a_directory},
    {"crash before the swap: the previous directory", test_crash_staged},
    {"crash after the exchange: the new one, checkpoints kept", test_crash_swapped},
    {"crash after carrying: the new one", test_crash_carried},
    {"crash between the fallback's renames: the previous one", test_crash_moved_aside},
    {"crash after the fallback's carry: the new one", test_crash_carried_fallback},
    {"a live process's temporaries stay", test_live_owner_kept},
    CU_TEST_INFO_NULL,
};
PC_TEST_MAIN("atomic_dir", tests)
