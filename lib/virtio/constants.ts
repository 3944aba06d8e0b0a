/**
 * Every virtio value node-kvm uses, once, named as in the virtio 1.2 specification (section in brackets).
 * Feature bits are bit numbers; `bit()` turns one into a 64-bit mask.
 */

/** A feature bit number as a 64-bit mask. */
export function bit(n: number): bigint {
  return 1n << BigInt(n);
}

// --- Device IDs [5] -----------------------------------------------------------------------------------------
export const VIRTIO_ID_NET = 1;
export const VIRTIO_ID_BLOCK = 2;
export const VIRTIO_ID_CONSOLE = 3;
export const VIRTIO_ID_ENTROPY = 4;
export const VIRTIO_ID_BALLOON = 5;
export const VIRTIO_ID_VSOCK = 19;

// --- Device status bits [2.1] -------------------------------------------------------------------------------
export const STATUS_ACKNOWLEDGE = 1;
export const STATUS_DRIVER = 2;
export const STATUS_DRIVER_OK = 4;
export const STATUS_FEATURES_OK = 8;
export const STATUS_DEVICE_NEEDS_RESET = 64;
export const STATUS_FAILED = 128;

// --- Reserved (device-independent) feature bits [6] ---------------------------------------------------------
export const VIRTIO_F_INDIRECT_DESC = 28;
export const VIRTIO_F_EVENT_IDX = 29;
export const VIRTIO_F_VERSION_1 = 32;
export const VIRTIO_F_ACCESS_PLATFORM = 33;
export const VIRTIO_F_RING_PACKED = 34;
export const VIRTIO_F_IN_ORDER = 35;
export const VIRTIO_F_NOTIFICATION_DATA = 38;
export const VIRTIO_F_RING_RESET = 40;

// --- virtio-mmio register offsets, version 2 [4.2.2] --------------------------------------------------------
export const MMIO_MAGIC_VALUE = 0x000;
export const MMIO_VERSION = 0x004;
export const MMIO_DEVICE_ID = 0x008;
export const MMIO_VENDOR_ID = 0x00c;
export const MMIO_DEVICE_FEATURES = 0x010;
export const MMIO_DEVICE_FEATURES_SEL = 0x014;
export const MMIO_DRIVER_FEATURES = 0x020;
export const MMIO_DRIVER_FEATURES_SEL = 0x024;
export const MMIO_QUEUE_SEL = 0x030;
export const MMIO_QUEUE_NUM_MAX = 0x034;
export const MMIO_QUEUE_NUM = 0x038;
export const MMIO_QUEUE_READY = 0x044;
export const MMIO_QUEUE_NOTIFY = 0x050;
export const MMIO_INTERRUPT_STATUS = 0x060;
export const MMIO_INTERRUPT_ACK = 0x064;
export const MMIO_STATUS = 0x070;
export const MMIO_QUEUE_DESC_LOW = 0x080;
export const MMIO_QUEUE_DESC_HIGH = 0x084;
export const MMIO_QUEUE_DRIVER_LOW = 0x090;
export const MMIO_QUEUE_DRIVER_HIGH = 0x094;
export const MMIO_QUEUE_DEVICE_LOW = 0x0a0;
export const MMIO_QUEUE_DEVICE_HIGH = 0x0a4;
export const MMIO_SHM_SEL = 0x0ac;
export const MMIO_SHM_LEN_LOW = 0x0b0;
export const MMIO_SHM_LEN_HIGH = 0x0b4;
export const MMIO_SHM_BASE_LOW = 0x0b8;
export const MMIO_SHM_BASE_HIGH = 0x0bc;
export const MMIO_QUEUE_RESET = 0x0c0;
export const MMIO_CONFIG_GENERATION = 0x0fc;
export const MMIO_CONFIG = 0x100;
/** Size of one transport's register window. */
export const MMIO_WINDOW_SIZE = 0x1000;

/** "virt" in little-endian. */
export const MMIO_MAGIC = 0x74726976;
/** The modern (non-legacy) virtio-mmio register layout. */
export const MMIO_VERSION_2 = 2;
/** Our vendor ID: the bytes "NKVM" read as a little-endian u32. */
export const NODE_KVM_VENDOR_ID = 0x4d564b4e;

/** InterruptStatus bits [4.2.2]. */
export const INTERRUPT_USED_BUFFER = 1;
export const INTERRUPT_CONFIG_CHANGE = 2;

// --- Split virtqueue [2.7] ----------------------------------------------------------------------------------
/** The largest queue size the spec allows. */
export const VIRTQ_MAX_SIZE = 32768;
export const VIRTQ_DESC_SIZE = 16;
export const VIRTQ_DESC_F_NEXT = 1;
export const VIRTQ_DESC_F_WRITE = 2;
export const VIRTQ_DESC_F_INDIRECT = 4;
/** Alignment of the descriptor table, driver (avail) area and device (used) area [2.7]. */
export const VIRTQ_DESC_ALIGN = 16;
export const VIRTQ_AVAIL_ALIGN = 2;
export const VIRTQ_USED_ALIGN = 4;
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
export const VIRTQ_USED_F_NO_NOTIFY = 1;
/** Bytes of one used-ring element (id u32, len u32). */
export const VIRTQ_USED_ELEM_SIZE = 8;
/** Drivers MUST NOT add a chain longer than 2^32 bytes [2.7.5]: lengths sum to at most this. */
export const VIRTQ_MAX_CHAIN_BYTES = 0xffff_ffff;

/** Byte size of the avail ring (flags, idx, ring[size], used_event). */
export function availRingSize(queueSize: number): number {
  return 6 + 2 * queueSize;
}
/** Byte size of the used ring (flags, idx, ring[size], avail_event). */
export function usedRingSize(queueSize: number): number {
  return 6 + VIRTQ_USED_ELEM_SIZE * queueSize;
}

// --- Block [5.2] ---------------------------------------------------------------------------------------------
export const VIRTIO_BLK_F_SIZE_MAX = 1;
export const VIRTIO_BLK_F_SEG_MAX = 2;
export const VIRTIO_BLK_F_RO = 5;
export const VIRTIO_BLK_F_BLK_SIZE = 6;
export const VIRTIO_BLK_F_FLUSH = 9;
export const VIRTIO_BLK_F_DISCARD = 13;
export const VIRTIO_BLK_F_WRITE_ZEROES = 14;
export const VIRTIO_BLK_T_IN = 0;
export const VIRTIO_BLK_T_OUT = 1;
export const VIRTIO_BLK_T_FLUSH = 4;
export const VIRTIO_BLK_T_GET_ID = 8;
export const VIRTIO_BLK_T_DISCARD = 11;
export const VIRTIO_BLK_T_WRITE_ZEROES = 13;
export const VIRTIO_BLK_S_OK = 0;
export const VIRTIO_BLK_S_IOERR = 1;
export const VIRTIO_BLK_S_UNSUPP = 2;
/** Protocol sector size: always 512 bytes, whatever the backing store's block size. */
export const VIRTIO_BLK_SECTOR_SIZE = 512;
/** struct virtio_blk_req header: type u32, reserved u32, sector u64. */
export const VIRTIO_BLK_REQ_HEADER_SIZE = 16;
/** struct virtio_blk_discard_write_zeroes: sector u64, num_sectors u32, flags u32. */
export const VIRTIO_BLK_DWZ_SEGMENT_SIZE = 16;
export const VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP = 1;
/** GET_ID returns a NUL-padded ASCII string of up to this many bytes. */
export const VIRTIO_BLK_ID_BYTES = 20;
/** virtio_blk_config field offsets. */
export const BLK_CFG_CAPACITY = 0;
export const BLK_CFG_SIZE_MAX = 8;
export const BLK_CFG_SEG_MAX = 12;
export const BLK_CFG_BLK_SIZE = 20;
export const BLK_CFG_MAX_DISCARD_SECTORS = 36;
export const BLK_CFG_MAX_DISCARD_SEG = 40;
export const BLK_CFG_DISCARD_SECTOR_ALIGNMENT = 44;
export const BLK_CFG_MAX_WRITE_ZEROES_SECTORS = 48;
export const BLK_CFG_MAX_WRITE_ZEROES_SEG = 52;
export const BLK_CFG_WRITE_ZEROES_MAY_UNMAP = 56;
export const BLK_CFG_SIZE = 60;

// --- Console [5.3] -------------------------------------------------------------------------------------------
export const VIRTIO_CONSOLE_F_SIZE = 0;
export const VIRTIO_CONSOLE_F_MULTIPORT = 1;
export const VIRTIO_CONSOLE_F_EMERG_WRITE = 2;
/** virtio_console_config: cols u16, rows u16, max_nr_ports u32, emerg_wr u32. */
export const CONSOLE_CFG_COLS = 0;
export const CONSOLE_CFG_ROWS = 2;
export const CONSOLE_CFG_MAX_NR_PORTS = 4;
export const CONSOLE_CFG_EMERG_WR = 8;
export const CONSOLE_CFG_SIZE = 12;

// --- Network [5.1] -------------------------------------------------------------------------------------------
export const VIRTIO_NET_F_MTU = 3;
export const VIRTIO_NET_F_MAC = 5;
export const VIRTIO_NET_F_STATUS = 16;
export const VIRTIO_NET_S_LINK_UP = 1;
/** virtio_net_hdr_v1 (with num_buffers, always present with VERSION_1). */
export const VIRTIO_NET_HDR_SIZE = 12;
/** Offset of num_buffers inside virtio_net_hdr_v1. */
export const VIRTIO_NET_HDR_NUM_BUFFERS = 10;
/** virtio_net_config: mac[6], status u16, max_virtqueue_pairs u16, mtu u16. */
export const NET_CFG_MAC = 0;
export const NET_CFG_STATUS = 6;
export const NET_CFG_MAX_VIRTQUEUE_PAIRS = 8;
export const NET_CFG_MTU = 10;
export const NET_CFG_SIZE = 12;
/** Smallest (header only) and largest (64 KiB IP packet + Ethernet/VLAN header) frames we forward. */
export const ETH_HEADER_SIZE = 14;
export const NET_MAX_FRAME_SIZE = 65535 + 18;

// --- Balloon [5.5] -------------------------------------------------------------------------------------------
export const VIRTIO_BALLOON_F_MUST_TELL_HOST = 0;
export const VIRTIO_BALLOON_F_STATS_VQ = 1;
export const VIRTIO_BALLOON_F_DEFLATE_ON_OOM = 2;
/** Balloon PFNs are always in 4 KiB units, whatever the guest page size. */
export const VIRTIO_BALLOON_PFN_SHIFT = 12;
export const VIRTIO_BALLOON_PAGE_SIZE = 4096;
/** virtio_balloon_config: num_pages u32, actual u32. */
export const BALLOON_CFG_NUM_PAGES = 0;
export const BALLOON_CFG_ACTUAL = 4;
export const BALLOON_CFG_SIZE = 8;
/** One virtio_balloon_stat entry: tag u16, val u64 (packed). */
export const BALLOON_STAT_SIZE = 10;
/** Stat tags [5.5.6.3], named as the host API reports them. */
export const BALLOON_STAT_NAMES: readonly string[] = [
  'swapIn',
  'swapOut',
  'majorFaults',
  'minorFaults',
  'freeMemory',
  'totalMemory',
  'availableMemory',
  'diskCaches',
  'hugetlbAllocations',
  'hugetlbFailures',
];

// --- Entropy [5.4]: one request queue, no features, no config ------------------------------------------------

// --- Socket [5.10] -------------------------------------------------------------------------------------------
export const VIRTIO_VSOCK_F_STREAM = 0;
/** Well-known CID of the host. */
export const VSOCK_HOST_CID = 2;
/** guest_cid values that are reserved and cannot be given to a guest. */
export const VSOCK_RESERVED_CIDS: readonly number[] = [0, 1, 2, 0xffff_ffff];
export const VSOCK_CFG_GUEST_CID = 0;
export const VSOCK_CFG_SIZE = 8;
export const VSOCK_HDR_SIZE = 44;
/** virtio_vsock_hdr field offsets. */
export const VSOCK_HDR_SRC_CID = 0;
export const VSOCK_HDR_DST_CID = 8;
export const VSOCK_HDR_SRC_PORT = 16;
export const VSOCK_HDR_DST_PORT = 20;
export const VSOCK_HDR_LEN = 24;
export const VSOCK_HDR_TYPE = 28;
export const VSOCK_HDR_OP = 30;
export const VSOCK_HDR_FLAGS = 32;
export const VSOCK_HDR_BUF_ALLOC = 36;
export const VSOCK_HDR_FWD_CNT = 40;
export const VSOCK_TYPE_STREAM = 1;
export const VSOCK_OP_INVALID = 0;
export const VSOCK_OP_REQUEST = 1;
export const VSOCK_OP_RESPONSE = 2;
export const VSOCK_OP_RST = 3;
export const VSOCK_OP_SHUTDOWN = 4;
export const VSOCK_OP_RW = 5;
export const VSOCK_OP_CREDIT_UPDATE = 6;
export const VSOCK_OP_CREDIT_REQUEST = 7;
/** SHUTDOWN flags: the peer will receive (RCV) / send (SEND) no more data. */
export const VSOCK_SHUTDOWN_F_RECEIVE = 1;
export const VSOCK_SHUTDOWN_F_SEND = 2;
export const VSOCK_EVENT_TRANSPORT_RESET = 0;
/** struct virtio_vsock_event: id u32. */
export const VSOCK_EVENT_SIZE = 4;
