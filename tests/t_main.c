/* t_main.c: the test runner: forks one child per registered test, each in a fresh temp dir. */
#include "t.h"

#include <stdarg.h>
#include <sys/wait.h>
#include <unistd.h>

#define T_MAX 512

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
    if (WIFSIGNALED(status))
        fprintf(stderr, "    killed by signal %d\n", WTERMSIG(status));
    return 0;
}

int
main(int argc, char **argv)
{
    int passed = 0, failed = 0;

    for (int i = 0; i < ntests; i++) {
        int match = argc < 2;
        for (int a = 1; a < argc; a++)
            if (strncmp(tests[i].name, argv[a], strlen(argv[a])) == 0)
                match = 1;
        if (!match)
            continue;
        if (run_one(i)) {
            printf("ok   %s\n", tests[i].name);
            passed++;
        } else {
            printf("FAIL %s\n", tests[i].name);
            failed++;
        }
        fflush(stdout);
    }
    printf("%d passed, %d failed\n", passed, failed);
    if (passed + failed == 0) {
        fprintf(stderr, "t: no test matched\n");
        return 2;
    }
    return failed ? 1 : 0;
}
