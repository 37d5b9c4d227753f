/*
 * A stand-in for the NVIDIA driver's libnvidia-ml.so.1, for hosts without a
 * GPU: the twelve NVML calls vigil-agent binds, with the ABI NVML documents,
 * answering from a state file that a test rewrites while the agent runs.
 * The agent loads it through VIGIL_NVML_LIBRARY, as it would load the real
 * one; nothing else in vigil knows it exists.
 *
 * $VIGIL_FAKE_NVML_STATE holds one line per GPU:
 *   TEMPERATURE SLOWDOWN UNCORRECTED_ECC XID_COUNT XID
 * XID_COUNT counts Xid events so far on that GPU: each time it grows, one
 * critical-Xid event with code XID is delivered. The file is read on every call.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_GPUS 16
#define NVML_SUCCESS 0
#define NVML_ERROR_INVALID_ARGUMENT 2
#define NVML_ERROR_NOT_FOUND 6
#define NVML_ERROR_TIMEOUT 10

typedef struct {
  unsigned temperature, slowdown;
  unsigned long long ecc;
  unsigned long long xid_count;
  unsigned xid;
} Gpu;

typedef struct { /* nvmlPciInfo_t (v3) */
  char busIdLegacy[16];
  unsigned domain, bus, device, pciDeviceId, pciSubSystemId;
  char busId[32];
} PciInfo;

typedef struct { /* nvmlEventData_t */
  void* device;
  unsigned long long eventType, eventData;
  unsigned gpuInstanceId, computeInstanceId;
} EventData;

static unsigned long long delivered[MAX_GPUS];
static int event_set;

static int ReadState(Gpu* gpus) {
  const char* path = getenv("VIGIL_FAKE_NVML_STATE");
  if (!path) return 0;
  FILE* f = fopen(path, "r");
  if (!f) return 0;
  int n = 0;
  while (n < MAX_GPUS && fscanf(f, "%u %u %llu %llu %u", &gpus[n].temperature, &gpus[n].slowdown,
                                &gpus[n].ecc, &gpus[n].xid_count, &gpus[n].xid) == 5)
    ++n;
  fclose(f);
  return n;
}

/* Handles are 1 + the index, never NULL. */
static int IndexOf(void* device, Gpu* gpus) {
  const int n = ReadState(gpus);
  const long i = (long)(intptr_t)device - 1;
  return i >= 0 && i < n ? (int)i : -1;
}

int nvmlInit_v2(void) {
  Gpu gpus[MAX_GPUS];
  const int n = ReadState(gpus);
  for (int i = 0; i < n; ++i) delivered[i] = gpus[i].xid_count; /* old events are not news */
  return NVML_SUCCESS;
}

int nvmlShutdown(void) { return NVML_SUCCESS; }

int nvmlDeviceGetCount_v2(unsigned* count) {
  Gpu gpus[MAX_GPUS];
  *count = (unsigned)ReadState(gpus);
  return NVML_SUCCESS;
}

int nvmlDeviceGetHandleByIndex_v2(unsigned index, void** device) {
  Gpu gpus[MAX_GPUS];
  if ((int)index >= ReadState(gpus)) return NVML_ERROR_INVALID_ARGUMENT;
  *device = (void*)(intptr_t)(index + 1);
  return NVML_SUCCESS;
}

int nvmlDeviceGetPciInfo_v3(void* device, PciInfo* pci) {
  Gpu gpus[MAX_GPUS];
  const int i = IndexOf(device, gpus);
  if (i < 0) return NVML_ERROR_INVALID_ARGUMENT;
  memset(pci, 0, sizeof(*pci));
  pci->bus = 0x10u + (unsigned)i;
  snprintf(pci->busId, sizeof(pci->busId), "00000000:%02X:00.0", pci->bus);
  snprintf(pci->busIdLegacy, sizeof(pci->busIdLegacy), "0000:%02X:00.0", pci->bus);
  return NVML_SUCCESS;
}

int nvmlDeviceGetTotalEccErrors(void* device, int error_type, int counter_type,
                                unsigned long long* count) {
  Gpu gpus[MAX_GPUS];
  const int i = IndexOf(device, gpus);
  if (i < 0 || error_type != 1 || counter_type != 0) return NVML_ERROR_INVALID_ARGUMENT;
  *count = gpus[i].ecc;
  return NVML_SUCCESS;
}

int nvmlDeviceGetTemperature(void* device, int sensor, unsigned* temperature) {
  Gpu gpus[MAX_GPUS];
  const int i = IndexOf(device, gpus);
  if (i < 0 || sensor != 0) return NVML_ERROR_INVALID_ARGUMENT;
  *temperature = gpus[i].temperature;
  return NVML_SUCCESS;
}

int nvmlDeviceGetTemperatureThreshold(void* device, int type, unsigned* temperature) {
  Gpu gpus[MAX_GPUS];
  const int i = IndexOf(device, gpus);
  if (i < 0 || type != 1) return NVML_ERROR_INVALID_ARGUMENT;
  *temperature = gpus[i].slowdown;
  return NVML_SUCCESS;
}

int nvmlEventSetCreate(void** set) {
  *set = &event_set;
  return NVML_SUCCESS;
}

int nvmlEventSetFree(void* set) {
  (void)set;
  return NVML_SUCCESS;
}

int nvmlDeviceRegisterEvents(void* device, unsigned long long types, void* set) {
  (void)device;
  (void)types;
  return set == &event_set ? NVML_SUCCESS : NVML_ERROR_INVALID_ARGUMENT;
}

int nvmlEventSetWait_v2(void* set, EventData* data, unsigned timeout_ms) {
  (void)timeout_ms;
  if (set != &event_set) return NVML_ERROR_INVALID_ARGUMENT;
  Gpu gpus[MAX_GPUS];
  const int n = ReadState(gpus);
  for (int i = 0; i < n; ++i) {
    if (gpus[i].xid_count > delivered[i]) {
      ++delivered[i];
      memset(data, 0, sizeof(*data));
      data->device = (void*)(intptr_t)(i + 1);
      data->eventType = 0x8; /* nvmlEventTypeXidCriticalError */
      data->eventData = gpus[i].xid;
      return NVML_SUCCESS;
    }
  }
  return NVML_ERROR_TIMEOUT;
}
