include $(sort $(wildcard $(BR2_EXTERNAL_DMAPINGPONG_PATH)/package/*/*.mk))
