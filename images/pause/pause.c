/* The pod sandbox's process for the sandbox's real node: it holds the pod's namespaces and sleeps until it is
 * told to stop. Built static (scripts/images-build.sh) so its image needs nothing else. */
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

static void stop(int sig) { _exit(128 + sig); }

static void reap(int sig) {
    (void)sig;
}

int main(void) {
    struct sigaction sa = {0};
    sa.sa_handler = stop;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* As PID 1 of a shared PID namespace it would inherit orphans: SA_NOCLDWAIT lets the kernel reap them. */
    sa.sa_handler = reap;
    sa.sa_flags = SA_NOCLDWAIT;
    sigaction(SIGCHLD, &sa, NULL);
    for (;;) pause();
    return EXIT_FAILURE;
}
