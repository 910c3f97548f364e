#include <stdio.h>
int main(void) { puts("peftc"); return 0; }
