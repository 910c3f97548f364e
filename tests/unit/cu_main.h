/* Shared main for CUnit test executables: define PC_TEST_SUITE(name) with an array of tests.
 *
 *   static CU_TestInfo tests[] = {{"name", fn}, CU_TEST_INFO_NULL};
 *   PC_TEST_MAIN("suite", tests)
 *
 * The exit code is the number of failures (CU_basic_run_tests does not set it). */
#ifndef PEFTC_CU_MAIN_H
#define PEFTC_CU_MAIN_H
#include <CUnit/Basic.h>
#include <stdio.h>
#include <stdlib.h>

/* removes a test's temporary directory tree; 0 when it is gone */
static inline int cu_rm_tree(const char *dir) {
    char cmd[4200];
    if (!dir || snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir) >= (int)sizeof cmd) return -1;
    return system(cmd) == 0 ? 0 : -1;
}

#define PC_TEST_MAIN(suite_name, test_array)                                                     \
    int main(void) {                                                                             \
        if (CU_initialize_registry() != CUE_SUCCESS) return 2;                                   \
        CU_SuiteInfo suites[] = {{suite_name, NULL, NULL, NULL, NULL, test_array},               \
                                 CU_SUITE_INFO_NULL};                                            \
        if (CU_register_suites(suites) != CUE_SUCCESS) { CU_cleanup_registry(); return 2; }      \
        CU_basic_set_mode(CU_BRM_VERBOSE);                                                       \
        CU_basic_run_tests();                                                                    \
        unsigned failed = CU_get_number_of_tests_failed();                                       \
        unsigned ran = CU_get_number_of_tests_run();                                             \
        CU_cleanup_registry();                                                                   \
        printf("%u passed, %u failed\n", ran - failed, failed);                                  \
        return failed ? 1 : 0;                                                                   \
    }
#endif
