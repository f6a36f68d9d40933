/* t_main.c: the test runner: forks one child per registered test, each in a fresh temp dir. */
#include "t.h"

#include "app/error_body.h"

#include <fnmatch.h>
#include <stdarg.h>
#include <sys/wait.h>
#include <unistd.h>

#define T_MAX 1024

static struct {
    const char *name;
    t_fn fn;
} tests[T_MAX];
static int ntests;

void
t_register(const char *name, t_fn fn)
{
    if (ntests >= T_MAX) {
        fprintf(stderr, "t: too many tests\n");
        exit(2);
    }
    tests[ntests].name = name;
    tests[ntests].fn = fn;
    ntests++;
}

void
t_fail(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "    %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

void
t_skip(const char *fmt, ...)
{
    va_list ap;
    fputs("    skip: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(T_SKIP_STATUS);
}

/* A pattern with a glob character matches the whole name; any other is a prefix. */
static int
name_matches(const char *name, const char *pattern)
{
    if (strpbrk(pattern, "*?[") != NULL)
        return fnmatch(pattern, name, 0) == 0;
    return strncmp(name, pattern, strlen(pattern)) == 0;
}

/* 1 passed, 0 failed, -1 skipped. */
static int
run_one(int i)
{
    char dir[] = "/tmp/sp-test-XXXXXX";
    pid_t pid;
    int status = 0;

    if (mkdtemp(dir) == NULL) {
        perror("mkdtemp");
        return 0;
    }
    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        perror("fork");
        return 0;
    }
    if (pid == 0) {
        if (chdir(dir) != 0)
            _exit(3);
        tests[i].fn();
        exit(0); /* exit, not _exit: sanitizers' leak checks run at exit */
    }
    while (waitpid(pid, &status, 0) < 0)
        ;
    {
        char cmd[64];
        pid_t rm = fork();
        snprintf(cmd, sizeof(cmd), "%s", dir);
        if (rm == 0) {
            execlp("rm", "rm", "-rf", cmd, (char *)NULL);
            _exit(127);
        }
        if (rm > 0)
            while (waitpid(rm, NULL, 0) < 0)
                ;
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 1;
    if (WIFEXITED(status) && WEXITSTATUS(status) == T_SKIP_STATUS)
        return -1;
    if (WIFSIGNALED(status))
        fprintf(stderr, "    killed by signal %d\n", WTERMSIG(status));
    return 0;
}

int
main(int argc, char **argv)
{
    int passed = 0, failed = 0, skipped = 0;
    const char *include[T_MAX], *exclude[T_MAX];
    int ninclude = 0, nexclude = 0;

    error_body_install(); /* the service's error body, as app/routes.c installs it */

    for (int a = 1; a < argc; a++) {
        if (strcmp(argv[a], "-x") == 0 && a + 1 < argc)
            exclude[nexclude++] = argv[++a];
        else if (argv[a][0] == '-') {
            fprintf(stderr, "usage: t [-x PATTERN]... [PATTERN]...\n");
            return 2;
        } else
            include[ninclude++] = argv[a];
    }
    for (int i = 0; i < ntests; i++) {
        int match = ninclude == 0, rc;
        for (int k = 0; k < ninclude && !match; k++)
            match = name_matches(tests[i].name, include[k]);
        for (int k = 0; k < nexclude && match; k++)
            match = !name_matches(tests[i].name, exclude[k]);
        if (!match)
            continue;
        rc = run_one(i);
        if (rc > 0) {
            printf("ok   %s\n", tests[i].name);
            passed++;
        } else if (rc < 0) {
            printf("skip %s\n", tests[i].name);
            skipped++;
        } else {
            printf("FAIL %s\n", tests[i].name);
            failed++;
        }
        fflush(stdout);
    }
    if (skipped)
        printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    else
        printf("%d passed, %d failed\n", passed, failed);
    if (passed + failed + skipped == 0) {
        fprintf(stderr, "t: no test matched\n");
        return 2;
    }
    if (failed)
        return 1;
    /* Only skips: T_SKIP_STATUS, which CTest reports as skipped (SKIP_RETURN_CODE). */
    return passed == 0 ? T_SKIP_STATUS : 0;
}
