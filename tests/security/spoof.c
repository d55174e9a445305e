/* A forger run inside containers by tests/security/test_networks.py.
 *
 *   spoof send SRC DST PORT TEXT   one UDP datagram from SRC (any address:
 *                                  a raw socket, IPPROTO_RAW, needs only the
 *                                  default CAP_NET_RAW) to DST:PORT
 *   spoof listen PORT              print "SOURCE TEXT" for every datagram
 *                                  that arrives on PORT, one line each
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int listen_on(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
    char buf[512];
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0 || bind(s, (struct sockaddr *)&a, sizeof a) < 0) {
        perror("listen");
        return 1;
    }
    for (;;) {
        struct sockaddr_in from;
        socklen_t len = sizeof from;
        ssize_t n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&from, &len);
        if (n < 0)
            return 1;
        printf("%s %.*s\n", inet_ntoa(from.sin_addr), (int)n, buf);
        fflush(stdout);
    }
}

static int send_from(const char *src, const char *dst, int port, const char *text)
{
    unsigned char pkt[512];
    size_t n = strlen(text);
    struct iphdr *ip = (struct iphdr *)pkt;
    struct udphdr *udp = (struct udphdr *)(pkt + sizeof *ip);
    struct sockaddr_in to = {.sin_family = AF_INET};
    int s;

    if (n > sizeof pkt - sizeof *ip - sizeof *udp)
        return 2;
    memset(pkt, 0, sizeof *ip + sizeof *udp);
    memcpy(pkt + sizeof *ip + sizeof *udp, text, n);
    ip->version = 4;
    ip->ihl = 5;
    ip->ttl = 64;
    ip->protocol = IPPROTO_UDP;
    ip->tot_len = htons((unsigned short)(sizeof *ip + sizeof *udp + n));
    if (inet_pton(AF_INET, src, &ip->saddr) != 1 || inet_pton(AF_INET, dst, &ip->daddr) != 1)
        return 2;
    udp->source = htons(40000);
    udp->dest = htons((unsigned short)port);
    udp->len = htons((unsigned short)(sizeof *udp + n));
    udp->check = 0; /* no checksum: allowed over IPv4 */
    to.sin_addr.s_addr = ip->daddr;
    s = socket(AF_INET, SOCK_RAW, IPPROTO_RAW); /* the kernel fills id and checksum */
    if (s < 0 || sendto(s, pkt, sizeof *ip + sizeof *udp + n, 0, (struct sockaddr *)&to,
                        sizeof to) < 0) {
        perror("send");
        return 1;
    }
    printf("sent\n");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "listen") == 0)
        return listen_on(atoi(argv[2]));
    if (argc == 6 && strcmp(argv[1], "send") == 0)
        return send_from(argv[2], argv[3], atoi(argv[4]), argv[5]);
    fprintf(stderr, "usage: spoof send SRC DST PORT TEXT | spoof listen PORT\n");
    return 2;
}
